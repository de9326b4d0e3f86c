# The part every slurm/*.sbatch template shares, sourced from the submit directory
# ($SLURM_SUBMIT_DIR/slurm/cnl-step.bash: Slurm runs a copy of the batch script from its spool
# directory, so the templates find this file through the repository they were submitted from).
#
#   cnl_step DONE_FILE CNL ARG...
#
# runs `srun --mpi=pmix CNL ARG...` as one step on the job's ranks, forwards USR1 and TERM to it
# (every rank checkpoints and cnl exits 75), requeues the job on 75, and exits the batch script
# with cnl's status (JOB_NOTE, if set, goes into its first line). DONE_FILE is a file every finished run of the command writes afresh
# (cnl locate: report.json, cnl enhance: enhance.json); an srun that exits 0 without rewriting
# it did not run cnl to the end (empty: no such check).

say() { echo "cnl-slurm[$(date +%H:%M:%S)]: $*"; }

cnl_step() {
    local done_file=$1 cnl=$2
    shift 2
    say "job ${SLURM_JOB_ID:-?} (${JOB_NOTE:-}restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}: ${SLURM_NTASKS:-?} ranks x ${OPENBLAS_NUM_THREADS:-?} BLAS threads"
    say "srun --mpi=pmix $cnl $*"
    # A file older than anything this run writes.
    started=$(mktemp); trap 'rm -f "$started"' EXIT
    # --kill-on-bad-exit=1: once one rank fails (an error, a crash, its node lost), Slurm ends the
    # step at once: the other ranks get SIGTERM, write their checkpoints and exit 75 well within
    # KillWait (the grace before SIGKILL, 30 s by default); resubmit to resume. (It was --wait=600:
    # the survivors ran on, then waited in the final reduction, for 600 s; scripts/bench-teardown.sh.)
    srun --mpi=pmix --kill-on-bad-exit=1 "$cnl" "$@" &
    step=$!

    interrupted=0
    forward() {
        interrupted=1
        say "got SIG$1: forwarding it to every rank (they checkpoint and exit 75)"
        kill -s "$1" "$step" 2>/dev/null || true
    }
    trap 'forward USR1' USR1
    trap 'forward TERM' TERM
    local rc
    while :; do
        interrupted=0
        wait "$step"; rc=$?
        # A trapped signal interrupts `wait` (status > 128) while srun still runs: wait again.
        if [ "$interrupted" = 1 ] && [ "$rc" -gt 128 ]; then continue; fi
        break
    done

    # srun can exit 0 although its tasks never started ("task 0 launch failed: Unspecified error";
    # seen under Slurm 22.05 on a requeued job's rerun). That is a failure, not a finished run.
    if [ "$rc" -eq 0 ] && [ -n "$done_file" ] && ! [ "$done_file" -nt "$started" ]; then
        say "error: srun exited 0 but no new $done_file: cnl did not run to the end; resubmit the same sbatch command to resume"
        rc=1
    fi
    if [ "$rc" -eq 75 ]; then
        say "cnl checkpointed (exit 75): requeueing job $SLURM_JOB_ID; the rerun resumes from the checkpoint"
        if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
        say "requeue refused (job cancelled?): resubmit the same sbatch command to resume"
    fi
    say "cnl exited with status $rc"
    exit "$rc"
}

#   last_output DEFAULT ARG...
# prints the value of the last `--output DIR` or `--output=DIR` among ARG (the last wins, as in
# cnl), else DEFAULT.
last_output() {
    local fallback=$1 out i
    shift
    out=$fallback
    local a=("$@")
    for ((i = 0; i < ${#a[@]}; i++)); do
        case ${a[i]} in --output) out=${a[i + 1]:-} ;; --output=*) out=${a[i]#--output=} ;; esac
    done
    printf '%s' "$out"
}
