#!/usr/bin/env bash
# Teardown after a failing rank under Slurm: kill -9 one rank of slurm/locate-multi-node.sbatch
# in the middle of its work, then measure the seconds until every rank of the job is gone and
# the samples its checkpoints keep (what a resubmission resumes from).
#
#   scripts/bench-teardown.sh [after|before ...]   (default: after before)
#   KIND=kill (default): kill -9 of rank 1 mid-run (a crash, the OOM killer, a lost node's rank)
#   KIND=exit: rank 1 exits with status 86 at its first checkpoint (CNL_TEST_CRASH_DURING_CHECKPOINT=1
#              for that rank only: a plain non-zero exit, no signal), i.e. after its last sample
#   after:  the template as it is (srun --kill-on-bad-exit=1: the step ends as soon as one task
#           fails; the survivors get SIGTERM, checkpoint and exit 75 within KillWait)
#   before: the template's former srun line (srun --wait=$BEFORE_WAIT, default 600: the step
#           ends that long after the first task exits). BEFORE_WAIT=60 shortens the wait.
#
# On the one-node cluster of scripts/slurm-cluster.sh (started here if it is not running):
# 1 node, 2 tasks (--overcommit), configs/tiny.yaml with --steps 19 and the default
# --checkpoint-every 10 (so a rank's finished samples are on disk only once it checkpoints on a
# signal or at its end), rank 1 (SLURM_PROCID=1) killed once the root's progress line shows
# KILL_AT (default 3) of the 8 samples done. Samples kept are read from the checkpoint headers.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=("$@"); [ $# -gt 0 ] || MODES=(after before)
BEFORE_WAIT=${BEFORE_WAIT:-600}
KILL_AT=${KILL_AT:-3}
KIND=${KIND:-kill}
[ -x .build/release/cnl ] || swift build -c release
scripts/slurm-cluster.sh start >/dev/null
CNL=$(readlink -f .build/release/cnl)
work=$(mktemp -d /tmp/cnl-teardown.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The pids of this run's cnl ranks (by SLURM_PROCID when given).
ranks() {
    local out=$1 procid=${2:-}
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$CNL" ] || continue
        tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -xF "$out" >/dev/null || continue
        if [ -n "$procid" ]; then tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -x "SLURM_PROCID=$procid" >/dev/null || continue; fi
        echo "${p#/proc/}"
    done
}

kept() {  # samples in the checkpoints of run directory $1
    python3 - "$1/checkpoints" <<'PY'
import json, os, struct, sys
d, n = sys.argv[1], 0
for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
    if f.endswith(".cnlck"):
        b = open(os.path.join(d, f), "rb").read()
        h = json.loads(b[16:16 + struct.unpack("<Q", b[8:16])[0]])
        n += len(h["finished"])
print(n)
PY
}

results=()
for mode in "${MODES[@]}"; do
    template=slurm/locate-multi-node.sbatch
    if [ "$mode" = before ]; then
        template=$work/before.sbatch
        sed "s/^srun --mpi=pmix --kill-on-bad-exit=1 /srun --mpi=pmix --wait=$BEFORE_WAIT /" slurm/locate-multi-node.sbatch >"$template"
        grep -q -- "--wait=$BEFORE_WAIT" "$template" || { echo "bench-teardown: error: the template's srun line was not found" >&2; exit 1; }
    fi
    out=$work/$mode
    bin=$CNL
    if [ "$KIND" = exit ]; then
        bin=$work/failing-rank-1.sh
        printf '#!/usr/bin/env bash\n[ "$SLURM_PROCID" = 1 ] && export CNL_TEST_CRASH_DURING_CHECKPOINT=1\nexec %q "$@"\n' "$CNL" >"$bin"
        chmod +x "$bin"
    fi
    id=$(sbatch --parsable --job-name="cnl-teardown-$mode" --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 --overcommit --time=30 \
        --no-requeue --output="$work/$mode.log" --export="ALL,CNL_BIN=$bin,CNL_EXTRA_ARGS=--steps 19 --progress-every 0.2" \
        "$template" configs/tiny.yaml "$out")
    echo "$mode: job $id ..." >&2
    if [ "$KIND" = kill ]; then
        for _ in $(seq 3000); do
            done_now=$(grep -o 'progress: [0-9]*/' "$work/$mode.log" 2>/dev/null | tail -1 | tr -dc 0-9 || true)
            [ "${done_now:-0}" -ge "$KILL_AT" ] && break
            sleep 0.05
        done
        victim=$(ranks "$out" 1)
        [ -n "$victim" ] || { echo "bench-teardown: error: rank 1 of job $id not found" >&2; cat "$work/$mode.log" >&2; exit 1; }
        kill -9 "$victim"; t0=$(date +%s.%N)
        echo "$mode: killed rank 1 (pid $victim); waiting for every rank to end ..." >&2
    else
        for _ in $(seq 3000); do [ -n "$(ranks "$out" 1)" ] && break; sleep 0.1; done
        while [ -n "$(ranks "$out" 1)" ]; do sleep 0.05; done
        t0=$(date +%s.%N)
        done_now=$(grep -o 'progress: [0-9]*/' "$work/$mode.log" 2>/dev/null | tail -1 | tr -dc 0-9 || true)
        echo "$mode: rank 1 exited; waiting for every rank to end ..." >&2
    fi
    while [ -n "$(ranks "$out")" ]; do sleep 0.1; done
    t1=$(date +%s.%N)
    while squeue -h -j "$id" 2>/dev/null | grep . >/dev/null; do sleep 0.5; done
    t2=$(date +%s.%N)
    results+=("$mode|$(echo "$t1 - $t0" | bc)|$(echo "$t2 - $t0" | bc)|$(kept "$out")|$(grep -c 'stop signal; checkpointed' "$work/$mode.log" || true)|$done_now")
    cp "$work/$mode.log" "/tmp/cnl-teardown-$mode.log"
done

echo
echo "$([ "$KIND" = kill ] && echo "kill -9 of rank 1" || echo "rank 1 exits 86 after its samples") of 2 (1 node, configs/tiny.yaml --steps 19, 8 samples, --checkpoint-every 10; KillWait=30)"
echo
echo "| template srun | samples done at the failure | s until every rank gone | s until the job left squeue | samples kept in checkpoints | ranks that checkpointed on a signal |"
echo "|---|---|---|---|---|---|"
for r in "${results[@]}"; do
    IFS='|' read -r mode gone left samples signalled at <<<"$r"
    flag=$([ "$mode" = before ] && echo "--wait=$BEFORE_WAIT" || echo "--kill-on-bad-exit=1")
    printf '| %s (%s) | %s of 8 | %.1f | %.1f | %s of 8 | %s |\n' "$mode" "$flag" "$at" "$gone" "$left" "$samples" "$signalled"
done
echo "(job logs: /tmp/cnl-teardown-<mode>.log)"
