#!/usr/bin/env bash
# The localization runs that Table 2 and Table 3 build on: every CONFIG given is localized into the
# directory its `output:` names (configs/table3/locate-<set>.yaml: 128 samples, IMDB 100, into
# runs/table3/<set>; configs/table2/locate-imdb.yaml: 128 reviews into runs/table2/locate/imdb).
# A finished run (report.json) is kept, a stopped one resumes from its checkpoints (to the same bytes).
#
#   NP=2 CNL=/tmp/cnl scripts/locate-runs.sh configs/table3/locate-gsm8k.yaml configs/table2/locate-imdb.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-1}
CNL=${CNL:-.build/release/cnl}
[ -x "$CNL" ] || { swift build -c release && CNL=.build/release/cnl; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
for config in "$@"; do
    [ -f "$config" ] || { echo "locate-runs: no $config (configs/table3/locate-<set>.yaml for gsm8k asdiv boolq imdb, configs/table2/locate-imdb.yaml)" >&2; exit 2; }
    out=$(sed -n 's/^output: *//p' "$config")
    [ -n "$out" ] || { echo "locate-runs: $config has no 'output:' line; add one naming the run directory" >&2; exit 2; }
    [ -f "$out/report.json" ] && continue
    args=(--config "$config")
    [ -d "$out/checkpoints" ] && args+=(--resume)
    echo "locating $config → $out"
    mpirun --oversubscribe -np "$NP" "$CNL" locate "${args[@]}"
done
