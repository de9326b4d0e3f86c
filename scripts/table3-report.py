#!/usr/bin/env python3
"""Table 3 in the layout of docs/results.md, from one or more erase.json files (standard library only).

    python3 scripts/table3-report.py runs/table3/erase/erase.json [more/erase.json ...]

Every (set, σ) row of every file is printed once: when two files hold the same row, the one with
more random draws wins (so a later, larger study replaces a partial one). Columns: neurons, base
and located accuracy, uniform and layer-matched accuracy (mean ± sd), base and located answer
log-likelihood, both baselines' log-likelihood (mean ± sd [min, max]), the IPP by log-likelihood
against each baseline, and the number of draws behind each baseline. The located LL is bold when
its IPP is positive against every baseline (erasing the located neurons hurt more than every draw).
"""
import json
import sys

SET_NAMES = {"gsm8k": "GSM8K", "asdiv": "ASDiv", "boolq": "BoolQ", "imdb": "IMDB", "csqa": "CommonsenseQA"}
ORDER = ["gsm8k", "asdiv", "boolq", "imdb", "csqa"]
BASELINES = ["uniform", "layer-matched"]


def num(x, digits=3):
    return f"{x:.{digits}f}".replace("-", "−")


def signed(x, digits=2):
    return ("+" if x >= 0 else "") + num(x, digits)


def set_key(name):
    stem = name.lower()
    for s in ORDER:
        if s in stem:
            return s
    return stem


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    rows = {}
    for path in paths:
        try:
            with open(path) as f:
                report = json.load(f)
        except (OSError, ValueError) as e:
            sys.exit(f"table3-report: {path}: {e}")
        samples = {s["name"]: s["samples"] for s in report["sets"]}
        runs = {r["name"]: r["data"] for r in report["runs"]}
        sets = {s["name"]: s["data"] for s in report["sets"]}
        for row in report["rows"]:
            if runs.get(row["run"]) != sets.get(row["set"]):
                continue  # a cross-matrix cell, not a Table 3 row
            key = (set_key(row["set"]), row["sigma"])
            draws = sum(b["draws"] for b in row["baselines"])
            if key not in rows or draws > rows[key][0]:
                rows[key] = (draws, row, samples[row["set"]])
    print("| set (samples) | σ | neurons | base acc | located acc | uniform acc mean ± sd | layer-matched acc mean ± sd "
          "| base LL | located LL | uniform LL mean ± sd [min, max] | layer-matched LL mean ± sd [min, max] "
          "| IPP (LL) uniform / layer-matched | draws (uniform, layer-matched) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key in sorted(rows, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else 99, k[1])):
        _, row, n = rows[key]
        by = {b["baseline"]: b for b in row["baselines"]}
        cells = [f"{SET_NAMES.get(key[0], key[0])} ({n})", f"{row['sigma']:g}", str(row["neurons"]),
                 num(row["base"]["accuracy"]), num(row["located"]["accuracy"])]
        for b in BASELINES:
            cells.append(f"{num(by[b]['accuracy']['mean'])} ± {num(by[b]['accuracy']['sd'])}" if b in by else "–")
        located = num(row["located"]["log_likelihood"])
        if all(b in by and by[b]["ipp_log_likelihood"] > 0 for b in BASELINES):
            located = f"**{located}**"
        cells += [num(row["base"]["log_likelihood"]), located]
        for b in BASELINES:
            if b in by:
                ll = by[b]["log_likelihood"]
                cells.append(f"{num(ll['mean'])} ± {num(ll['sd'])} [{num(ll['min'])}, {num(ll['max'])}]")
            else:
                cells.append("–")
        cells.append(" / ".join(signed(by[b]["ipp_log_likelihood"]) if b in by else "–" for b in BASELINES))
        cells.append(", ".join(str(by[b]["draws"]) if b in by else "0" for b in BASELINES))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
