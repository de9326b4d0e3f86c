#!/usr/bin/env bash
# Eq. 7 attribution speed of cnl beside the best exact PyTorch program for the same shortcut
# (scripts/oracle/bench_attribution_exact.py) and the knowledge-neuron algorithm, same machine,
# same run, same token ids: SmolLM2-135M-Instruct, GSM8K test records 1-3, prompt
# "Question: {question}\nAnswer:", final answers, S = 19.
#
#   scripts/bench-attribution.sh [THREADS...]      (default: 1 2)
#   KN=full scripts/bench-attribution.sh            the KN algorithm's full run on the first two
#                                                   samples (minutes per sample) instead of 3 timed
#                                                   (m, l) pairs per sample, extrapolated
#   LIMIT=N                                         samples (default 3)
#
# Prints a Markdown table: seconds of each side per thread count, the ratio, the minimal FLOP
# rate against sgemm measured in the same run, the score agreement, memory per row budget.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=.assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=("${@:-1}")
[ $# -gt 0 ] || THREADS=(1 2)
LIMIT=${LIMIT:-3}
KN=${KN:-extrapolate}
[ -f "$MODEL" ] || scripts/fetch-assets.sh
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
[ -x .build/release/cnl ] || swift build -c release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
PY=(env HF_HUB_OFFLINE=1 .venv/bin/python)

for t in "${THREADS[@]}"; do
  echo "cnl, $t thread(s) over row batches ..." >&2
  .build/release/cnl bench attribution "$MODEL" --limit "$LIMIT" --threads "$t" --threading rows \
    --budgets "$([ "$t" = "${THREADS[0]}" ] && echo 150,300,600,1200 || echo '')" --scores-out "$out/cnl-scores" --json > "$out/cnl-$t.json"
  if [ "$t" != 1 ]; then
    echo "cnl, one worker with $t BLAS threads ..." >&2
    .build/release/cnl bench attribution "$MODEL" --limit "$LIMIT" --threads "$t" --threading blas --budgets '' --json > "$out/cnl-blas-$t.json"
  fi
done
python3 -c "
import json; r = json.load(open('$out/cnl-${THREADS[0]}.json'))
json.dump([{'prompt': s['prompt_ids'], 'answer': s['answer_ids']} for s in r['samples']], open('$out/samples.json', 'w'))"
for t in "${THREADS[@]}"; do
  echo "PyTorch exact, $t thread(s) ..." >&2
  "${PY[@]}" scripts/oracle/bench_attribution_exact.py --samples "$out/samples.json" --threads "$t" \
    --scores-out "$out/torch-scores" 2>/dev/null > "$out/torch-$t.jsonl"
done
KNT=${THREADS[-1]}
if [ "$KN" = full ]; then
  python3 -c "import json; s = json.load(open('$out/samples.json')); json.dump(s[:2], open('$out/kn-samples.json', 'w'))"
  echo "KN algorithm, full run of 2 samples, $KNT thread(s) (minutes) ..." >&2
  "${PY[@]}" scripts/oracle/bench_attribution_kn.py --samples "$out/kn-samples.json" --threads "$KNT" --pairs 0 2>/dev/null > "$out/kn.jsonl"
else
  echo "KN algorithm, 3 (m, l) pairs per sample, $KNT thread(s) ..." >&2
  "${PY[@]}" scripts/oracle/bench_attribution_kn.py --samples "$out/samples.json" --threads "$KNT" --pairs 3 2>/dev/null > "$out/kn.jsonl"
fi

"${PY[@]}" - "$out" "$KNT" "${THREADS[@]}" <<'PY'
import json, sys
import numpy as np
from safetensors.numpy import load_file
d, knt, threads = sys.argv[1], int(sys.argv[2]), [int(t) for t in sys.argv[3:]]
cnl = {t: json.load(open(f"{d}/cnl-{t}.json")) for t in threads}
blas = {t: json.load(open(f"{d}/cnl-blas-{t}.json")) for t in threads if t != 1}
torch = {t: [json.loads(l) for l in open(f"{d}/torch-{t}.jsonl") if l.strip()] for t in threads}
kn = [json.loads(l) for l in open(f"{d}/kn.jsonl") if l.strip()]
first = cnl[threads[0]]
n = len(first["samples"])
print(f"SmolLM2-135M, GSM8K test records 1-{n}, final answers, S = 19; "
      f"X = {[s['prompt_tokens'] for s in first['samples']]}, Y = {[s['answer_tokens'] for s in first['samples']]}\n")
print("| threads | cnl (s) | PyTorch exact (s) | PyTorch / cnl | cnl minimal GFLOP/s | sgemm 2048³ GFLOP/s | of peak |")
print("|---|---|---|---|---|---|---|")
for t in threads:
    c = cnl[t]
    ts = sum(s["seconds"] for s in torch[t])
    peak = c["sgemm_gflop_per_second"][f"square 2048 ({t} thread{'s' if t > 1 else ''})"]
    print(f"| {t} | {c['seconds']:.2f} | {ts:.2f} | {ts / c['seconds']:.2f}x | {c['minimal_gflop_per_second']:.1f} | {peak:.1f} | "
          f"{100 * c['minimal_gflop_per_second'] / peak:.0f} % |")
for t, b in blas.items():
    print(f"| {t} (one worker, {t} BLAS threads) | {b['seconds']:.2f} | | | {b['minimal_gflop_per_second']:.1f} | | |")
if len(threads) > 1:
    a, b = cnl[threads[0]]["seconds"], cnl[threads[-1]]["seconds"]
    ta, tb = sum(s["seconds"] for s in torch[threads[0]]), sum(s["seconds"] for s in torch[threads[-1]])
    print(f"\nspeed-up {threads[0]} -> {threads[-1]} threads: cnl {a / b:.2f}x, PyTorch exact {ta / tb:.2f}x")
minimal = sum(s["minimal_gflop"] for s in first["samples"])
print(f"minimal FLOPs of the shortcut (clean pass, rows forward and backward, one clean row per answer token): {minimal:.0f} GFLOP")
print("\nscore agreement, cnl vs PyTorch exact (float32 both), max|Δ| / max|score| per sample: "
      + ", ".join(f"{np.abs(load_file(f'{d}/cnl-scores/sample-{i}.safetensors')['scores'] - load_file(f'{d}/torch-scores/sample-{i}.safetensors')['scores']).max() / np.abs(load_file(f'{d}/torch-scores/sample-{i}.safetensors')['scores']).max():.1e}" for i in range(n)))
ck = cnl[knt]["samples"]
print(f"\nKN algorithm ({knt} thread(s)) against cnl at {knt} thread(s) (cnl per-sample time: its share of the stream by minimal FLOPs):")
for s, k in zip(ck, kn):
    share = cnl[knt]["seconds"] * s["minimal_gflop"] / sum(x["minimal_gflop"] for x in ck)
    what = "full run" if k.get("full_run") else f"{k['pairs_timed']} pairs timed, extrapolated"
    print(f"  sample {s['index']}: KN {k['seconds_per_sample_extrapolated']:.0f} s ({what}), cnl {share:.2f} s: "
          f"{k['seconds_per_sample_extrapolated'] / share:.0f}x")
print("\nmemory of one worker per row budget (first sample): "
      + ", ".join(f"{m['row_budget']}: {m['peak_chunk_bytes'] / 1e6:.0f} MB" for m in first["memory"]))
PY
