#!/usr/bin/env bash
# Pipeline stages and shared weights, measured side by side in one run: the same localization as
# one process, as pure data parallelism and as groups of P stages, with and without one weight
# copy per node. Per run: layers per stage, attribution seconds, samples/s, core-seconds per row,
# each stage's idle fraction (the bubble), per-rank peak RSS and PSS, the weights a rank holds,
# the node's PSS, and whether scores.safetensors equals the one-process bytes.
#
#   scripts/bench-stages.sh [smollm2] [7b]     (default: both)
#   LIMIT=N        SmolLM2 samples (default 16), config CONFIG (default configs/gsm8k-final.yaml)
#   LIMIT7B=N      samples on the 7B-shaped model (default 4; tiny config with S = 19: 2 answer tokens)
#
# Stage runs named -weights use --stage-balance weights (even weights per rank), the others work.
# The 7B-shaped model is a random Llama with Llama-2-7B's widths and 4 layers
# (scripts/oracle/make_llama7b_shaped.py, 2.1 GB of F16, made once under .assets/models/).
# Prints Markdown tables; runs as root under mpirun --oversubscribe, one BLAS thread per rank.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=("${@:-smollm2 7b}")
[ $# -gt 0 ] || PARTS=(smollm2 7b)
CONFIG=${CONFIG:-configs/gsm8k-final.yaml}
LIMIT=${LIMIT:-16}
LIMIT7B=${LIMIT7B:-4}
SMOLLM2=.assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
BIG=.assets/models/llama7b-shaped-4l
[ -f "$SMOLLM2" ] || scripts/fetch-assets.sh
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
[ -x .build/release/cnl ] || swift build -c release
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run NAME NP STAGES WEIGHTS ARGS...: one localization into $out/NAME
run() {
  local name=$1 np=$2 stages=$3 weights=$4; shift 4
  echo "$name: np $np, $stages stage(s), $weights weights ..." >&2
  local flag=(); [ "$weights" = private ] && flag=(--no-shared-weights)
  if [ "$np" = 1 ]; then
    .build/release/cnl locate "$@" --output "$out/$name" --threads 1 > "$out/$name.log" 2>&1
  else
    mpirun --oversubscribe -np "$np" .build/release/cnl locate "$@" --output "$out/$name" --stages "$stages" "${flag[@]}" > "$out/$name.log" 2>&1
  fi || { cat "$out/$name.log" >&2; exit 1; }
}

table() {  # table TITLE REFERENCE NAME...
  python3 - "$out" "$@" <<'PY'
import json, os, sys, filecmp
out, title, ref, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"\n### {title}\n")
print("| run | groups × stages | weights | layers per stage | load s | busy s | samples/s | core-s per row | idle per stage | peak RSS per rank (MB) | PSS per rank (MB) | weights per rank (MB) | node PSS (MB) | same bytes |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
mb = lambda b: f"{b / 1e6:.0f}"
for n in names:
    r = json.load(open(os.path.join(out, n, "report.json")))
    t = r["timings"]; ranks = r["placement"]["ranks"]; stages = r.get("stages", 1)
    rows = sum(p["rows"] for p in t["per_rank"])
    pipe = r.get("pipeline")
    layers = ", ".join(f"{a}–{b - 1}" for a, b in (pipe["layers_per_stage"] if pipe else [[0, ranks[0]["layers"][1]]]))
    idle = ", ".join(f"{100 * x:.0f} %" for x in pipe["idle_fraction_per_stage"]) if pipe else "–"
    holders = max(sum(1 for y in ranks if (y["node"], y["stage"]) == (x["node"], x["stage"])) for x in ranks)
    shared = "shared" if any(x["shared_weights"] for x in ranks) else ("private" if holders > 1 else "one copy")
    busy = max(x["seconds"] for x in ranks)   # attribution proper, without getting the weights
    load = max(x.get("load_seconds", 0) for x in ranks) if len(ranks) > 1 else t["plan_seconds"]
    def per_stage(key):
        return ", ".join(mb(max(x[key] for x in ranks if x["stage"] == s)) for s in range(stages))
    same = filecmp.cmp(os.path.join(out, ref, "scores.safetensors"), os.path.join(out, n, "scores.safetensors"), shallow=False)
    print(f"| {n} | {r['ranks'] // stages} × {stages} | {shared} | {layers} | {load:.1f} | {busy:.1f} | {r['data']['samples'] / busy:.3f} | "
          f"{busy * r['ranks'] / rows:.4f} | {idle} | {per_stage('peak_rss_bytes')} | {per_stage('pss_bytes')} | "
          f"{per_stage('weight_bytes')} | {sum(x['pss_bytes'] for x in r['placement']['nodes']) / 1e6:.0f} | {'yes' if same else '**no**'} |")
PY
}

for part in "${PARTS[@]}"; do
  case $part in
    smollm2)
      args=(--config "$CONFIG" --limit "$LIMIT" --grid 2,4 --force)
      run np1 1 1 own "${args[@]}"
      run np2-dp 2 1 shared "${args[@]}"
      run np2-dp-private 2 1 private "${args[@]}"
      run np2-stages2 2 2 shared "${args[@]}"
      run np2-stages2-weights 2 2 shared "${args[@]}" --stage-balance weights
      run np3-stages3 3 3 shared "${args[@]}"
      run np3-stages3-weights 3 3 shared "${args[@]}" --stage-balance weights
      run np4-dp 4 1 shared "${args[@]}"
      run np4-stages2 4 2 shared "${args[@]}"
      table "SmolLM2-135M ($CONFIG, $LIMIT samples)" np1 np1 np2-dp np2-dp-private np2-stages2 np2-stages2-weights np3-stages3 np3-stages3-weights np4-dp np4-stages2
      ;;
    7b)
      [ -f "$BIG/model.safetensors" ] || .venv/bin/python scripts/oracle/make_llama7b_shaped.py "$BIG" 4
      args=(--config configs/tiny.yaml --model "$BIG" --limit "$LIMIT7B" --steps 19 --grid 2 --force)
      run 7b-np1 1 1 own "${args[@]}"
      run 7b-np2-dp 2 1 shared "${args[@]}"
      run 7b-np2-stages2 2 2 shared "${args[@]}"
      run 7b-np2-stages2-weights 2 2 shared "${args[@]}" --stage-balance weights
      table "Llama-2-7B-shaped, 4 layers, random weights (tiny config, S = 19, $LIMIT7B samples)" 7b-np1 7b-np1 7b-np2-dp 7b-np2-stages2 7b-np2-stages2-weights
      ;;
    *) echo "unknown part '$part' (smollm2 or 7b)" >&2; exit 2 ;;
  esac
done
