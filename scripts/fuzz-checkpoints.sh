#!/usr/bin/env bash
# Coverage-guided fuzzing of the checkpoint readers with libFuzzer + AddressSanitizer (optional;
# CI does not need it: the seeded mutation fuzzer in Tests/EngineTests/CheckpointFuzzTests.swift
# runs in every test run). Compiles Sources/Engine/Checkpoint/*.swift with the entry point in
# scripts/fuzz/, seeds the corpus from the oracle fixtures, and runs.
#   scripts/fuzz-checkpoints.sh [RUNS] [extra libFuzzer flags…]     (default 200000 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200000}; shift || true
out=.build-fuzz; mkdir -p "$out" "$out/corpus" "$out/crashes"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name CheckpointFuzz \
    Sources/Engine/Checkpoint/*.swift scripts/fuzz/CheckpointFuzzer.swift -o "$out/checkpoint-fuzzer" 2> "$out/build.log" \
    || { cat "$out/build.log"; exit 1; }
fx=.assets/oracle/checkpoints
if [ -d "$fx" ]; then
    find "$fx" -name '*.gguf' -size -8k -exec cp {} "$out/corpus/" \;
    find "$fx" -name '*.safetensors' -size -24k -exec cp {} "$out/corpus/" \;
fi
"$out/checkpoint-fuzzer" "$out/corpus" -runs="$runs" -max_len=32768 -artifact_prefix="$out/crashes/" -print_final_stats=1 "$@"
