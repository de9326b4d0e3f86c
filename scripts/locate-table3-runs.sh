#!/usr/bin/env bash
# The localization runs that Table 2 and Table 3 share: for every SET given, configs/table3/locate-<set>.yaml
# (128 samples; IMDB 100) into runs/table3/<set>. A finished run (report.json) is kept, a stopped one
# resumes from its checkpoints (to the same bytes).
#
#   NP=2 CNL=/tmp/cnl scripts/locate-table3-runs.sh gsm8k asdiv boolq imdb
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-1}
CNL=${CNL:-.build/release/cnl}
[ -x "$CNL" ] || { swift build -c release && CNL=.build/release/cnl; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
for set in "$@"; do
    out=runs/table3/$set
    [ -f "configs/table3/locate-$set.yaml" ] || { echo "locate-table3-runs: no configs/table3/locate-$set.yaml (sets: gsm8k asdiv boolq imdb)" >&2; exit 2; }
    [ -f "$out/report.json" ] && continue
    args=(--config "configs/table3/locate-$set.yaml" --output "$out")
    [ -d "$out/checkpoints" ] && args+=(--resume)
    echo "locating $set → $out"
    mpirun --oversubscribe -np "$NP" "$CNL" locate "${args[@]}"
done
