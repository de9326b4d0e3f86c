#!/usr/bin/env bash
# Runs every Python oracle (scripts/oracle/fixtures_*.py) in the .venv; each writes its
# reference outputs under .assets/oracle/<topic>/ and skips work that is already up to date.
# Order matters: the attribution oracle reads the random models the models oracle saves, and the
# enhance oracle the random gemma3 of the gemma3 oracle.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh --oracle
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
first=(scripts/oracle/fixtures_models.py scripts/oracle/fixtures_gemma3.py)
for f in "${first[@]}" scripts/oracle/fixtures_*.py; do
    case " ${done_list:-} " in *" $f "*) continue ;; esac
    done_list="${done_list:-} $f"
    echo "fixtures: $f"
    .venv/bin/python "$f"
done
