#!/usr/bin/env bash
# The paper's Table 3 (erase) and Fig. 5's erase side on SmolLM2: for every set, the localization
# run of configs/table3/locate-<set>.yaml (128 samples; IMDB 100) into runs/table3/<set>, then
#   1. `cnl erase --pairs own` over all runs: each run's located neurons erased and evaluated on its
#      own set's held-out records (configs/table3/eval-<set>.yaml), against K uniform and K
#      layer-matched draws, at every σ, into runs/table3/erase/;
#   2. `cnl erase --pairs all --cross-sigma 6` with CROSS_K draws of one baseline: every run's σ = 6
#      neurons on every set, the cross-dataset matrix, into runs/table3/cross/.
#
#   scripts/table3.sh                                    GSM8K, ASDiv, BoolQ, IMDB; σ 3, 6, 12; K = 5; both baselines
#   NP=2 SETS="boolq imdb" SIGMAS=6 scripts/table3.sh    a part (a later full run reuses every finished evaluation)
#   CNL=/tmp/cnl scripts/table3.sh                       another binary (a copy, so that a rebuild does not change it mid-study)
#   STEPS=table|cross                                    only one of the two studies
#
# Everything resumes: a finished localization (report.json) is kept, a stopped one resumes from its
# checkpoints, and cnl erase keeps every finished evaluation in <output>/jobs/ and reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-1}
SETS=${SETS:-"gsm8k asdiv boolq imdb"}
SIGMAS=${SIGMAS:-3,6,12}
K=${K:-5}
BASELINES=${BASELINES:-uniform,layer-matched}
CROSS_K=${CROSS_K:-1}
CROSS_BASELINE=${CROSS_BASELINE:-uniform}
STEPS=${STEPS:-table,cross}
CNL=${CNL:-.build/release/cnl}
[ -x "$CNL" ] || { swift build -c release && CNL=.build/release/cnl; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
runs=() evals=() configs=()
for set in $SETS; do
    configs+=("configs/table3/locate-$set.yaml"); runs+=("runs/table3/$set"); evals+=(--eval "configs/table3/eval-$set.yaml")
done
NP=$NP CNL=$CNL scripts/locate-runs.sh "${configs[@]}"
if [[ ",$STEPS," == *",table,"* ]]; then
    echo "table3: σ = $SIGMAS, K = $K ($BASELINES) → runs/table3/erase"
    mpirun --oversubscribe -np "$NP" "$CNL" erase "${runs[@]}" "${evals[@]}" --sigma "$SIGMAS" \
        --random-seeds "$K" --baseline "$BASELINES" --pairs own --output runs/table3/erase
fi
if [[ ",$STEPS," == *",cross,"* ]]; then
    echo "table3: cross matrix at σ = 6, K = $CROSS_K ($CROSS_BASELINE) → runs/table3/cross"
    mpirun --oversubscribe -np "$NP" "$CNL" erase "${runs[@]}" "${evals[@]}" --sigma 6 --cross-sigma 6 \
        --random-seeds "$CROSS_K" --baseline "$CROSS_BASELINE" --pairs all --output runs/table3/cross
fi
