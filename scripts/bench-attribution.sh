#!/usr/bin/env bash
# Eq. 7 attribution speed of cnl vs the PyTorch knowledge-neuron-style algorithm, same machine,
# same run, one thread: SmolLM2-135M-Instruct, 2 GSM8K samples with final answers and 2 with
# full answers. Also prints cnl's FLOP rate against single-thread sgemm and memory per row budget.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=.assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || scripts/fetch-assets.sh
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
[ -x .build/release/cnl ] || swift build -c release
out=$(mktemp -d)
OPENBLAS_NUM_THREADS=1 .build/release/cnl bench attribution "$MODEL" --threads 1 --json > "$out/cnl.json"
python3 -c "
import json; r = json.load(open('$out/cnl.json'))
json.dump([{'prompt': s['prompt_ids'], 'answer': s['answer_ids']} for s in r['samples']], open('$out/samples.json', 'w'))"
HF_HUB_OFFLINE=1 .venv/bin/python scripts/oracle/bench_attribution_kn.py --samples "$out/samples.json" --threads 1 2>/dev/null > "$out/torch.jsonl"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/cnl.json"))
kn = [json.loads(l) for l in open(f"{d}/torch.jsonl") if l.strip()]
peak = max(r["sgemm_gflop_per_second"].values())
for k, v in sorted(r["sgemm_gflop_per_second"].items()):
    print(f"single-thread sgemm {k}: {v:.1f} GFLOP/s")
for s, t in zip(r["samples"], kn):
    print(f"sample {s['index']} ({s['answer_kind']}): X={s['prompt_tokens']} Y={s['answer_tokens']} rows={s['rows']} | "
          f"cnl {s['seconds']:.2f} s ({s['gflop_per_second']:.1f} GFLOP/s = {100*s['gflop_per_second']/peak:.0f}% of sgemm peak) | "
          f"PyTorch KN-style {t['seconds_per_pair']:.2f} s per (m,l) x {s['answer_tokens']}x30 = {t['seconds_per_sample_extrapolated']:.0f} s | "
          f"speed-up {t['seconds_per_sample_extrapolated']/s['seconds']:.0f}x")
for m in r["memory"]:
    print(f"row budget {m['row_budget']}: peak chunk memory {m['peak_chunk_bytes']/1e6:.0f} MB, {m['seconds']:.2f} s")
PY
