#!/usr/bin/env bash
# The paper's Table 2 on SmolLM2: for every set, a localization run of 128 samples (Table 3's
# configs/table3/locate-<set>.yaml into runs/table3/<set>; for IMDB, whose Table 3 run holds 100 reviews,
# configs/table2/locate-imdb.yaml into runs/table2/locate/imdb), then one `cnl enhance` per σ over all sets: each
# run's neurons tuned on configs/table2/train-<set>.yaml, every arm evaluated on every
# configs/table2/eval-<set>.yaml (Table 2 on the set's own data, the cross matrix and Table 5 on
# the others), into runs/table2/s<σ>/.
#
#   scripts/table2.sh                                   GSM8K, ASDiv, BoolQ, IMDB; σ 6 and 3; epochs 1,5,10; K = 3
#   NP=2 SETS="gsm8k boolq" SIGMAS=6 ARMS=located,random scripts/table2.sh
#   CNL=/tmp/cnl scripts/table2.sh                      another binary (a copy, so that a rebuild does not change it mid-study)
#
# Everything resumes: a finished localization (report.json) is kept, a stopped one resumes from its
# checkpoints, and cnl enhance resumes its arms from jobs/ (to the same bytes).
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-1}
SETS=${SETS:-"gsm8k asdiv boolq imdb"}
SIGMAS=${SIGMAS:-"6 3"}
EPOCHS=${EPOCHS:-1,5,10}
K=${K:-3}
ARMS=${ARMS:-located,random,without-located}
CNL=${CNL:-.build/release/cnl}
[ -x "$CNL" ] || { swift build -c release && CNL=.build/release/cnl; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
runs=() trains=() evals=() configs=()
for set in $SETS; do
    if [ -f "configs/table2/locate-$set.yaml" ]; then
        configs+=("configs/table2/locate-$set.yaml"); runs+=("runs/table2/locate/$set")
    else
        configs+=("configs/table3/locate-$set.yaml"); runs+=("runs/table3/$set")
    fi
    trains+=(--train "configs/table2/train-$set.yaml"); evals+=(--eval "configs/table2/eval-$set.yaml")
done
NP=$NP CNL=$CNL scripts/locate-runs.sh "${configs[@]}"
for sigma in $SIGMAS; do
    echo "table2: σ = $sigma → runs/table2/s$sigma"
    mpirun --oversubscribe -np "$NP" "$CNL" enhance "${runs[@]}" "${trains[@]}" "${evals[@]}" --sigma "$sigma" \
        --epochs "$EPOCHS" --random-seeds "$K" --arms "$ARMS" --output "runs/table2/s$sigma"
done
