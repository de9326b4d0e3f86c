#!/usr/bin/env bash
# Stragglers: makespan of static against dynamic assignment with one slow rank, measured side by
# side in one run, with the bytes of scores.safetensors compared (cmp) to a one-process run.
#
#   scripts/bench-stragglers.sh                    # SLOWDOWN=sleep, NP=2, the last rank 3x slower
#   NP=3 SLOW=2 REPEAT=2 scripts/bench-stragglers.sh
#   SLOWDOWN=taskset scripts/bench-stragglers.sh   # np 3: ranks 0, 1 share core 0, rank 2 has core 1
#   LIMIT=N                                        # samples of configs/tiny.yaml (S = 3; default 24)
#
# Two ways to slow a rank:
# - sleep (default): CNL_TEST_SLOW_RANK=<last rank>:SLOW makes that rank take SLOW times as long
#   per sample (it sleeps SLOW - 1 times each sample's time), as a slower or busier node would.
#   It takes no CPU, so the numbers hold on a machine that others share.
# - taskset: mpirun -np 3 --bind-to none, each rank pinned by its OMPI_COMM_WORLD_RANK: ranks 0
#   and 1 share core 0 (half speed each), rank 2 has core 1. Real CPU contention, but on a
#   shared 2-core machine anything else running moves the numbers more than the pinning does.
# Makespan = the report's attribution_seconds: from the broadcast plan until every rank's last
# sample (it includes the other ranks' model load, the same in both modes). REPEAT alternates
# static and dynamic runs; the table shows each, the summary the best of each mode.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${LIMIT:-24}
REPEAT=${REPEAT:-1}
SLOWDOWN=${SLOWDOWN:-sleep}
NP=${NP:-2}
SLOW=${SLOW:-3}
case "$SLOWDOWN" in
  sleep) launch=(env "CNL_TEST_SLOW_RANK=$((NP - 1)):$SLOW"); how="mpirun -np $NP, rank $((NP - 1)) ${SLOW}x slower per sample (sleep)" ;;
  taskset) NP=3; how="mpirun -np 3 --bind-to none: ranks 0, 1 share core 0, rank 2 alone on core 1 (taskset)" ;;
  *) echo "bench-stragglers: error: SLOWDOWN must be sleep or taskset, got '$SLOWDOWN'" >&2; exit 2 ;;
esac
[ -x .build/release/cnl ] || swift build -c release
[ -f .assets/models/SmolLM2-135M-Instruct.Q4_1.gguf ] || scripts/fetch-assets.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# Local launches only: PMIx's native security (a munge socket without munged stalls each start 2.3 s).
export PMIX_MCA_psec=${PMIX_MCA_psec:-native}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The per-rank pinning: ranks 0 and 1 on core 0, rank 2 on core 1.
cat > "$out/pinned.sh" <<'SH'
#!/usr/bin/env bash
case "${OMPI_COMM_WORLD_RANK:-0}" in 0|1) core=0 ;; *) core=1 ;; esac
exec taskset -c "$core" "$@"
SH
chmod +x "$out/pinned.sh"
[ "$SLOWDOWN" = taskset ] && launch=("$out/pinned.sh")

echo "one process (reference bytes) ..." >&2
.build/release/cnl locate --config configs/tiny.yaml --limit "$LIMIT" --output "$out/reference" --threads 1 > "$out/reference.log" 2>&1 \
  || { cat "$out/reference.log" >&2; exit 1; }

names=()
for i in $(seq 1 "$REPEAT"); do
  for mode in static dynamic; do
    name=$mode-$i
    echo "$name: $how ..." >&2
    start=$(date +%s.%N)
    mpirun --oversubscribe --bind-to none -np "$NP" "${launch[@]}" .build/release/cnl locate --config configs/tiny.yaml --limit "$LIMIT" \
      --assignment "$mode" --output "$out/$name" > "$out/$name.log" 2>&1 || { cat "$out/$name.log" >&2; exit 1; }
    echo "$(date +%s.%N) - $start" | bc > "$out/$name.wall"
    if cmp -s "$out/reference/scores.safetensors" "$out/$name/scores.safetensors"; then echo same > "$out/$name.cmp"; else echo DIFFERENT > "$out/$name.cmp"; fi
    names+=("$name")
  done
done

python3 - "$out" "$LIMIT" "$how" "${names[@]}" <<'PY'
import json, os, sys
out, limit, how, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"\n{limit} samples of configs/tiny.yaml, {how}\n")
print("| run | makespan s (attribution) | wall s (mpirun) | samples per rank | busy s per rank | bytes vs one process |")
print("|---|---|---|---|---|---|")
span = {}
for n in names:
    r = json.load(open(os.path.join(out, n, "report.json")))
    t = r["timings"]
    wall = float(open(os.path.join(out, n + ".wall")).read())
    same = open(os.path.join(out, n + ".cmp")).read().strip()
    samples = ", ".join(str(p["samples"]) for p in t["per_rank"])
    busy = ", ".join(f"{p['seconds']:.1f}" for p in t["per_rank"])
    span.setdefault(n.split("-")[0], []).append(t["attribution_seconds"])
    print(f"| {n} | {t['attribution_seconds']:.1f} | {wall:.1f} | {samples} | {busy} | {same} |")
s, d = min(span["static"]), min(span["dynamic"])
print(f"\nbest makespan: static {s:.1f} s, dynamic {d:.1f} s (dynamic/static = {d / s:.2f})")
PY
