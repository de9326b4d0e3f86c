#!/usr/bin/env bash
# Completeness of each integration rule against its cost, on real samples (SPEC "Quadrature"):
# the gap |Σ_j attr_m(l, j) − (P_m(1) − P_m(0))| over every (m, l), for the paper's rule (20
# points), the trapezoid (20 points) and Gauss–Legendre with 4, 6 and 8 nodes, beside the rows
# and seconds each one took. P_m(0) comes from the paper rule's α = 0 rows (it does not depend
# on the rule); P_m(1) from the clean pass.
#
#   scripts/bench-quadrature.sh [THREADS] [LIMIT]     (default: 2 threads, 8 GSM8K samples)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=.assets/models/SmolLM2-135M-Instruct.Q4_1.gguf
THREADS=${1:-2}
LIMIT=${2:-8}
[ -f "$MODEL" ] || scripts/fetch-assets.sh
[ -x .build/release/cnl ] || swift build -c release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { .build/release/cnl bench attribution "$MODEL" --threads "$THREADS" --limit "$LIMIT" --budgets '' --json "$@"; }
echo "paper, trapezoid, Gauss–Legendre 4/6/8 on $LIMIT GSM8K samples, $THREADS thread(s) ..." >&2
run > "$out/paper.json"
run --normalization trapezoid > "$out/trapezoid.json"
for k in 4 6 8 12; do run --normalization gauss-legendre --points "$k" > "$out/gl$k.json"; done
python3 - "$out" <<'PY'
import json, math, sys
d = sys.argv[1]
rules = [("paper (S = 19)", "paper"), ("trapezoid (S = 19)", "trapezoid"), ("Gauss–Legendre 4", "gl4"),
         ("Gauss–Legendre 6", "gl6"), ("Gauss–Legendre 8", "gl8"), ("Gauss–Legendre 12", "gl12")]
paper = json.load(open(f"{d}/paper.json"))
p0 = [s["p_zero"] for s in paper["samples"]]
print(f"SmolLM2-135M, GSM8K test records 1-{len(paper['samples'])}, final answers; gap = |Σ_j attr_m(l, j) − (P_m(1) − P_m(0))| "
      "over all (m, l), relative: divided by |P_m(1) − P_m(0)| where that is ≥ 1e-3\n")
print("| rule | rows | seconds | max gap | mean gap | median relative gap |")
print("|---|---|---|---|---|---|")
for label, key in rules:
    r = json.load(open(f"{d}/{key}.json"))
    gaps, rel = [], []
    for s, z in zip(r["samples"], p0):
        for a, p1, p00 in zip(s["attribution_sums"], s["p_clean"], z):
            g = abs(a - (p1 - p00))
            gaps.append(g)
            if abs(p1 - p00) >= 1e-3:
                rel.append(g / abs(p1 - p00))
    rel.sort()
    rows = sum(s["rows"] for s in r["samples"])
    print(f"| {label} | {rows} | {r['seconds']:.2f} | {max(gaps):.2e} | {sum(gaps) / len(gaps):.2e} | {rel[len(rel) // 2]:.2e} |")
PY
