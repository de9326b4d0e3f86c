#!/usr/bin/env bash
# Evaluation speed of `cnl evaluate` vs HF transformers (scripts/oracle/bench_evaluate.py) on the
# same samples at the same thread count, measured back to back in one run: the oracle's four task
# files (GSM8K 50 generate; BoolQ 20, CommonsenseQA 20, IMDB 10 choice). Both time the evaluation
# only (model load excluded; cnl's time is its job time in evaluation.json).
# Usage: scripts/bench-evaluate.sh [THREADS] [LIMIT]   (default: 1 thread, every sample of each file)
#        CNL=/path/to/cnl scripts/bench-evaluate.sh   another binary (e.g. an earlier build, for a before/after table)
set -euo pipefail
cd "$(dirname "$0")/.."
T=${1:-1}; LIMIT=${2:-}
MODEL=.assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || scripts/fetch-assets.sh
[ -f .assets/oracle/evaluate/gsm8k/data.jsonl ] || scripts/make-fixtures.sh
CNL=${CNL:-.build/release/cnl}
[ -x "$CNL" ] || { swift build -c release && CNL=.build/release/cnl; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
declare -A DS=(
  [gsm8k]='  prompt: "Question: {question}\nAnswer:"
  answer: " {answer_final}"
  task: generate'
  [boolq]='  prompt: "{passage}\nQuestion: {question}?\nAnswer:"
  answer: " {answer}"
  verbalizer:
    answer: {"True": "yes", "False": "no"}
  task: choice'
  [csqa]='  prompt: "Question: {question}\nOptions:{options}\nAnswer:"
  answer: " {answer}"
  options: options
  task: choice'
  [imdb]='  prompt: "Review: {text}\nSentiment:"
  answer: " {label}"
  verbalizer:
    label: {"0": "negative", "1": "positive"}
  task: choice'
)
echo "| task | samples | threads | cnl s | cnl samples/s | HF s | HF samples/s | cnl speed-up | same accuracy |"
echo "|---|---|---|---|---|---|---|---|---|"
for task in gsm8k boolq csqa imdb; do
  data=.assets/oracle/evaluate/$task/data.jsonl
  if [ -n "$LIMIT" ]; then head -n "$LIMIT" "$data" > "$tmp/$task.jsonl"; data=$tmp/$task.jsonl; fi
  printf 'model: %s\ndataset:\n  path: %s\n%s\noutput: %s\n' "$MODEL" "$data" "${DS[$task]}" "$tmp/$task" > "$tmp/$task.yaml"
  OPENBLAS_NUM_THREADS=$T "$CNL" evaluate --config "$tmp/$task.yaml" --threads "$T" >/dev/null 2>"$tmp/$task.err" || { cat "$tmp/$task.err"; exit 1; }
  theirs=$(HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python scripts/oracle/bench_evaluate.py --task "$task" --data "$data" --threads "$T" 2>/dev/null | tail -1)
  python3 - "$task" "$T" "$tmp/$task/evaluation.json" "$theirs" <<'PY'
import json, sys
task, t, ours, theirs = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), json.loads(sys.argv[4])
n, a, b = ours["statistics"]["samples"], ours["seconds"], theirs["seconds"]
same = abs(ours["statistics"]["accuracy"] - theirs["accuracy"]) < 1e-12
print(f"| {task} | {n} | {t} | {a:.1f} | {n/a:.2f} | {b:.1f} | {n/b:.2f} | {b/a:.2f}x | {same} |")
PY
done
