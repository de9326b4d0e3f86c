#!/usr/bin/env bash
# Runs every Python oracle (scripts/oracle/fixtures_*.py) in the .venv; each writes its
# reference outputs under .assets/oracle/<topic>/ and skips work that is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for f in scripts/oracle/fixtures_*.py; do
    echo "fixtures: $f"
    .venv/bin/python "$f"
done
