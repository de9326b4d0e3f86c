#!/usr/bin/env bash
# Enhance training speed of cnl vs PyTorch CPU, same run, same samples, neurons and threads: one
# epoch (batches of 8) over configs/table2/train-gsm8k.yaml's 32 GSM8K samples, 100 uniformly
# drawn neurons' W_in rows, Adam. Usage: scripts/bench-enhance.sh [THREADS ...] (default: 1 2)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .assets/models/SmolLM2-135M-Instruct.Q4_1.gguf ] || scripts/fetch-assets.sh
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
[ -x .build/release/cnl ] || swift build -c release
CNL=.build/release/cnl
CONFIG=${CONFIG:-configs/table2/train-gsm8k.yaml}
NEURONS=${NEURONS:-100}
plan=$(mktemp --suffix .json)
trap 'rm -f "$plan"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for t in ${@:-1 2}; do
  ours=$(OPENBLAS_NUM_THREADS=$t $CNL bench enhance --train "$CONFIG" --neurons "$NEURONS" --threads "$t" --write-plan "$plan" --json 2>/dev/null)
  theirs=$(OPENBLAS_NUM_THREADS=$t .venv/bin/python scripts/oracle/bench_enhance_torch.py "$plan" --threads "$t" 2>/dev/null | tail -1)
  python3 - "$t" "$ours" "$theirs" <<'PY'
import json, sys
t, a, b = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ra = a["tokens"] / a["seconds"]
print(f"threads={t}: {a['samples']} samples, {a['tokens']} tokens, {a['neurons']} neurons | cnl {a['seconds']:.2f} s ({ra:.1f} tok/s, "
      f"mean loss {a['meanLoss']:.4f}) | PyTorch {b['torch']} {b['seconds']:.2f} s ({b['tokens_per_second']:.1f} tok/s, mean loss {b['mean_loss']:.4f}) | "
      f"cnl speed-up {b['seconds'] / a['seconds']:.2f}x")
PY
done
