#!/usr/bin/env bash
# Installs what cnl needs on a fresh Debian machine: system libraries (MPI, BLAS, zstd) and,
# with --oracle, the Python venv (.venv) whose HF transformers/torch are the tests' ground truth.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in libopenmpi-dev openmpi-bin libopenblas-dev libzstd-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ "${1:-}" = "--slurm" ]; then
    # A real one-node Slurm cluster for the sbatch templates and SlurmTests (started by
    # scripts/slurm-cluster.sh). Debian's slurm-wlm ships mpi/pmix (linked to libpmix2), the
    # only launch that works with Debian's Open MPI: `srun --mpi=list` must show it.
    need_slurm=()
    for pkg in slurm-wlm munge slurm-wlm-basic-plugins libpmix2; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need_slurm+=("$pkg")
    done
    if [ ${#need_slurm[@]} -gt 0 ]; then
        echo "setup: installing ${need_slurm[*]}"
        SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_slurm[@]}" >/dev/null
    fi
    # srun needs some slurm.conf even to list plugins: probe with a throwaway one.
    probe=$(mktemp -d)
    printf 'ClusterName=probe\nSlurmctldHost=localhost\nNodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n' >"$probe/slurm.conf"
    mpis=$(SLURM_CONF="$probe/slurm.conf" srun --mpi=list 2>&1 || true)
    rm -rf "$probe"
    if ! grep -qw pmix <<<"$mpis"; then
        echo "setup: srun --mpi=list shows no pmix plugin (cnl under srun needs --mpi=pmix):" >&2
        echo "$mpis" >&2
        exit 1
    fi
fi

if [ "${1:-}" = "--oracle" ]; then
    req=scripts/oracle/requirements.txt
    stamp=.venv/.requirements.installed
    if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
        echo "setup: building the Python oracle venv (.venv) from $req"
        python3 -m venv .venv
        .venv/bin/pip install -q -r "$req"
        cp "$req" "$stamp"
    fi
fi
