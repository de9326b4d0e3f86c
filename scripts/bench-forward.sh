#!/usr/bin/env bash
# Forward speed of cnl vs PyTorch CPU (HF transformers) on the same machine, in the same run:
# SmolLM2-135M-Instruct, a 128-token prompt (GSM8K text), then 64 greedy tokens with the KV
# cache, at the same thread count. Usage: scripts/bench-forward.sh [THREADS ...] (default: 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=.assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || scripts/fetch-assets.sh
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
[ -x .build/release/cnl ] || swift build -c release
CNL=.build/release/cnl
# The prompt: the first 128 tokens of the concatenated GSM8K test questions.
IDS=$($CNL tokenize "$MODEL" --file .assets/data/gsm8k/test.jsonl --json-field question --max-tokens 128 --ids-only)
for threads in "${@:-1 2}"; do
  for t in $threads; do
    ours=$(OPENBLAS_NUM_THREADS=$t $CNL bench forward "$MODEL" --token-ids "$IDS" --new-tokens 64 --threads "$t" --json)
    theirs=$(HF_HUB_OFFLINE=1 .venv/bin/python scripts/oracle/bench_forward.py --model "$MODEL" --token-ids "$IDS" --new-tokens 64 --threads "$t" 2>/dev/null | tail -1)
    python3 - "$t" "$ours" "$theirs" <<'PY'
import json, sys
t, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ta, tb = a["prefill_seconds"] + a["decode_seconds"], b["prefill_seconds"] + b["decode_seconds"]
print(f"threads={t}: cnl prefill {a['prefill_seconds']:.3f}s decode {a['decode_seconds']:.3f}s total {ta:.3f}s | "
      f"PyTorch {b['torch']} prefill {b['prefill_seconds']:.3f}s decode {b['decode_seconds']:.3f}s total {tb:.3f}s | "
      f"speed-up {tb/ta:.2f}x (prefill {b['prefill_seconds']/a['prefill_seconds']:.2f}x, decode {b['decode_seconds']/a['decode_seconds']:.2f}x) | "
      f"same greedy tokens: {a['generated'] == b['generated']}")
PY
  done
done
