#!/usr/bin/env python3
"""Table 1 from the runs scripts/table1.sh wrote (standard library only).

    python3 scripts/table1-report.py runs/table1 [--svg docs/figures/table1-layer-profile.svg]

Reads <root>/<model>/<set>/{report.json, neurons.json, converge/summary.csv} and prints a Markdown
table: samples (a/b), then per σ the overlap, IoU and neuron fraction of the run's own a/b split,
then the `cnl converge --seeds 20` band (mean ± sd over the 20 splits) at the largest n for σ = 6.
Also writes <root>/table1.md and the layer profile (share of the σ = 6 neurons per relative depth,
10 bins, every set pooled per model and each set thin) as an SVG.
"""
import csv
import json
import os
import sys

SETS = ["gsm8k", "asdiv", "boolq", "imdb", "csqa"]
SET_NAMES = {"gsm8k": "GSM8K", "asdiv": "ASDiv", "boolq": "BoolQ", "imdb": "IMDB", "csqa": "CommonsenseQA"}
MODEL_NAMES = {"smollm2": "SmolLM2-135M", "gemma3": "Gemma-3-270M"}
COLORS = {"smollm2": "#1f77b4", "gemma3": "#d62728"}
BINS = 10


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}"


def load(root):
    runs = []
    for model in sorted(os.listdir(root)):
        mdir = os.path.join(root, model)
        if not os.path.isdir(mdir):
            continue
        for s in SETS:
            d = os.path.join(mdir, s)
            rp = os.path.join(d, "report.json")
            if not os.path.exists(rp):
                continue
            with open(rp) as f:
                report = json.load(f)
            with open(os.path.join(d, "neurons.json")) as f:
                neurons = json.load(f)
            band = None
            sp = os.path.join(d, "converge", "summary.csv")
            if os.path.exists(sp):
                with open(sp) as f:
                    rows = [r for r in csv.DictReader(f) if float(r["sigma"]) == 6]
                if rows:
                    band = max(rows, key=lambda r: int(r["n"]))
            runs.append({"model": model, "set": s, "report": report, "neurons": neurons, "band": band})
    return runs


def table(runs):
    lines = [
        "| model | set | samples (a/b) | σ = 3: overlap / IoU / neurons | σ = 6: overlap / IoU / neurons | σ = 12: overlap / IoU / neurons | σ = 6, K splits at the largest n: overlap / IoU (mean ± sd) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        rep = r["report"]
        data = rep["data"]
        cells = []
        for sigma in (3, 6, 12):
            res = next((x for x in rep["results"] if float(x["sigma"]) == sigma), None)
            if res is None:
                cells.append("–")
                continue
            a = res["agreement"]
            frac = res["whole"]["fraction"]
            cells.append(f"{pct(a['overlap'])} % / {pct(a['iou'])} % / {100 * frac:.2f} %")
        b = r["band"]
        band = "–" if b is None else (
            f"n = {b['n']}, K = {b['draws']}: {100 * float(b['overlap_mean']):.1f} ± {100 * float(b['overlap_std']):.1f} % / "
            f"{100 * float(b['iou_mean']):.1f} ± {100 * float(b['iou_std']):.1f} %")
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {SET_NAMES[r['set']]} | {data['samples']} "
                     f"({data['size_a']}/{data['size_b']}) | " + " | ".join(cells) + f" | {band} |")
    return "\n".join(lines)


def profile(run, sigma=6):
    """Share of the σ mask's neurons in each of BINS relative-depth bins (layer / L)."""
    L = run["report"]["model"]["layers"]
    entry = next((e for e in run["neurons"] if float(e["sigma"]) == sigma), None)
    counts = [0] * BINS
    if entry is None:
        return counts, 0
    for n in entry["neurons"]:
        counts[min(BINS - 1, n["layer"] * BINS // L)] += 1
    return counts, len(entry["neurons"])


def svg(runs, path):
    W, H, left, right, top, bottom = 700, 380, 60, 210, 40, 50
    pw, ph = W - left - right, H - top - bottom
    models = sorted({r["model"] for r in runs})
    series = []
    for m in models:
        pooled, total = [0] * BINS, 0
        for r in (r for r in runs if r["model"] == m):
            c, t = profile(r)
            if t:
                series.append((m, r["set"], [x / t for x in c], False))
            pooled = [p + x for p, x in zip(pooled, c)]
            total += t
        if total:
            series.append((m, "all sets", [x / total for x in pooled], True))
    ymax = max([max(s[2]) for s in series] + [0.05])
    ymax = (int(ymax * 10) + 1) / 10

    def xy(i, v):
        return left + (i + 0.5) * pw / BINS, top + ph * (1 - v / ymax)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">Where the located neurons sit (σ = 6): share per relative depth</text>']
    for k in range(6):
        v = ymax * k / 5
        y = top + ph * (1 - v / ymax)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{100 * v:.0f} %</text>')
    for i in range(BINS + 1):
        x = left + i * pw / BINS
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{i / BINS:.1f}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{H - 12}" text-anchor="middle">relative depth (layer / L, 10 bins; 0 = first layer)</text>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>')
    for m, s, v, pooled in series:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, t) for i, t in enumerate(v)))
        width, opacity, dash = (3, 1, "") if pooled else (1, 0.55, ' stroke-dasharray="4 3"')
        out.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS.get(m, "black")}" stroke-width="{width}" '
                   f'stroke-opacity="{opacity}"{dash}/>')
    ly = top + 6
    for m in models:
        names = [SET_NAMES[r["set"]] for r in runs if r["model"] == m]
        lines = [", ".join(names[i:i + 3]) for i in range(0, len(names), 3)]
        out.append(f'<line x1="{left + pw + 12}" y1="{ly}" x2="{left + pw + 36}" y2="{ly}" stroke="{COLORS.get(m, "black")}" stroke-width="3"/>')
        out.append(f'<text x="{left + pw + 40}" y="{ly + 4}">{MODEL_NAMES.get(m, m)}</text>')
        out.append(f'<text x="{left + pw + 40}" y="{ly + 18}" font-size="10">pooled; dashed: each set of</text>')
        for k, line in enumerate(lines):
            out.append(f'<text x="{left + pw + 40}" y="{ly + 30 + 12 * k}" font-size="10">{line}</text>')
        ly += 44 + 12 * len(lines)
    out.append("</svg>")
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: table1-report.py RUNS_ROOT [--svg FILE]")
    root = args[0]
    svg_path = args[args.index("--svg") + 1] if "--svg" in args else os.path.join(root, "layer-profile.svg")
    runs = load(root)
    if not runs:
        sys.exit(f"table1-report: {root}: no finished runs (<model>/<set>/report.json)")
    md = table(runs)
    print(md)
    with open(os.path.join(root, "table1.md"), "w") as f:
        f.write(md + "\n")
    svg(runs, svg_path)
    print(f"\nwrote {os.path.join(root, 'table1.md')} and {svg_path}")


if __name__ == "__main__":
    main()
