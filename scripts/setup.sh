#!/usr/bin/env bash
# Installs what cnl needs on a fresh Debian machine: system libraries (MPI, BLAS, zstd) and,
# with --oracle, the Python venv (.venv) whose HF transformers/torch are the tests' ground truth.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs the Debian packages among "$@" that are missing (quiet when none are).
apt_install() {
    local need=() pkg
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
    [ ${#need[@]} -eq 0 ] && return 0
    echo "setup: installing ${need[*]}"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}

apt_install libopenmpi-dev openmpi-bin libopenblas-dev libzstd-dev pkg-config

if [ "${1:-}" = "--slurm" ]; then
    # A real one-node Slurm cluster for the sbatch templates and SlurmTests (started by
    # scripts/slurm-cluster.sh). Debian's slurm-wlm ships mpi/pmix (linked to libpmix2), the
    # only launch that works with Debian's Open MPI: `srun --mpi=list` must show it.
    apt_install slurm-wlm munge slurm-wlm-basic-plugins libpmix2 iproute2   # iproute2: scripts/virtual-cluster.sh (namespaces, veth bridge)
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
