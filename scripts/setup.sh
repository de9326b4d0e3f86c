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
