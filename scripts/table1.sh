#!/usr/bin/env bash
# The paper's Table 1 on this project's two real models: `cnl locate` (with the per-sample store)
# and `cnl converge --seeds 20` for every set of configs/table1/<model>/, into runs/table1/, then
# scripts/table1-report.py writes the Markdown tables, the layer-profile SVG and the Appendix E curves.
#
#   scripts/table1.sh                       every set, as many samples as each config says
#   NP=2 LIMIT=256 GRID=8,16,32,64,128 scripts/table1.sh   256 per set, as docs/results.md ran it
#                                           (IMDB has 200 reviews: GRID up to 100 there)
#   NP=2 MODELS="gemma3" SETS="gsm8k imdb" scripts/table1.sh
#   CNL=/tmp/cnl scripts/table1.sh          a copy of the binary, so a rebuild does not touch the study
#
# A finished run (report.json) is kept; a stopped one resumes from its checkpoints. Runs go set by
# set, both models each, so a stop leaves comparable pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-1}
MODELS=${MODELS:-"smollm2 gemma3"}
SETS=${SETS:-"gsm8k imdb boolq asdiv csqa"}
CNL=${CNL:-.build/release/cnl}
[ -x "$CNL" ] || swift build -c release
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
for set in $SETS; do
    for model in $MODELS; do
        cfg=configs/table1/$model/$set.yaml
        out=runs/table1/$model/$set
        args=(--config "$cfg" --output "$out" --save-per-sample)
        [ -n "${LIMIT:-}" ] && args+=(--limit "$LIMIT")
        [ -n "${GRID:-}" ] && args+=(--grid "$GRID")
        if [ -f "$out/report.json" ]; then
            echo "table1: $out is finished"
        else
            [ -d "$out/checkpoints" ] && args+=(--resume)
            echo "table1: $model $set → $out"
            mpirun --oversubscribe -np "$NP" "$CNL" locate "${args[@]}"
        fi
        [ -f "$out/converge/summary.csv" ] || "$CNL" converge "$out" --seeds 20
    done
done
python3 scripts/table1-report.py runs/table1
