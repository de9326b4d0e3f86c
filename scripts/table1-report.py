#!/usr/bin/env python3
"""Table 1 from the runs scripts/table1.sh wrote (standard library only).

    python3 scripts/table1-report.py runs/table1 [--svg docs/figures/table1-layer-profile.svg]

Reads <root>/<model>/<set>/{report.json, neurons.json, converge/summary.csv} and prints a Markdown
table: samples (a/b), then per σ the overlap, IoU and neuron fraction of the run's own a/b split,
then the `cnl converge --seeds 20` band (mean ± sd over the 20 splits) at the largest n for σ = 6.
Also writes <root>/table1.md, the layer profile (share of the σ = 6 neurons per relative depth,
10 bins, every set pooled per model and each set thin) as an SVG, and the Appendix E curves of
every run (σ = 6 overlap and IoU, mean ± sd of the 20 splits against n; one panel per model) as a
second SVG, with their numbers as a second Markdown table.

    python3 scripts/table1-report.py runs/table1 --svg docs/figures/table1-layer-profile.svg \
        --convergence-svg docs/figures/table1-convergence.svg
"""
import csv
import json
import math
import os
import sys

SETS = ["gsm8k", "asdiv", "boolq", "imdb", "csqa"]
SET_NAMES = {"gsm8k": "GSM8K", "asdiv": "ASDiv", "boolq": "BoolQ", "imdb": "IMDB", "csqa": "CommonsenseQA"}
MODEL_NAMES = {"smollm2": "SmolLM2-135M", "gemma3": "Gemma-3-270M"}
COLORS = {"smollm2": "#1f77b4", "gemma3": "#d62728"}
SET_COLORS = {"gsm8k": "#1f77b4", "asdiv": "#ff7f0e", "boolq": "#2ca02c", "imdb": "#d62728", "csqa": "#9467bd"}
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
            band, curve = None, []
            sp = os.path.join(d, "converge", "summary.csv")
            if os.path.exists(sp):
                with open(sp) as f:
                    curve = sorted((r for r in csv.DictReader(f) if float(r["sigma"]) == 6), key=lambda r: int(r["n"]))
                if curve:
                    band = curve[-1]
            runs.append({"model": model, "set": s, "report": report, "neurons": neurons, "band": band,
                         "curve": curve})
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


def curve_table(runs):
    """σ = 6 overlap / IoU, mean of the 20 splits, at every n of each run's grid."""
    grid = sorted({int(c["n"]) for r in runs for c in r["curve"]})
    lines = ["| model | set | " + " | ".join(f"n = {n}" for n in grid) + " |",
             "|---|---|" + "---|" * len(grid)]
    for r in runs:
        at = {int(c["n"]): c for c in r["curve"]}
        cells = [f"{100 * float(at[n]['overlap_mean']):.1f} / {100 * float(at[n]['iou_mean']):.1f}" if n in at else "–"
                 for n in grid]
        lines.append(f"| {MODEL_NAMES.get(r['model'], r['model'])} | {SET_NAMES[r['set']]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_atomically(path, text):
    tmp = path + ".partial"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def convergence_svg(runs, path):
    """Appendix E: σ = 6 overlap (solid) and IoU (dashed) against n, mean ± sd bands, a panel per model."""
    models = sorted({r["model"] for r in runs if r["curve"]})
    if not models:
        return False
    grid = sorted({int(c["n"]) for r in runs for c in r["curve"]})
    pw, ph, left, gap, top, bottom, right = 330, 280, 60, 40, 68, 60, 150
    W, H = max(640, left + len(models) * pw + (len(models) - 1) * gap + right), top + ph + bottom
    lo, hi = math.log2(grid[0]), math.log2(grid[-1])
    ymin = min(0.4, min(float(c["iou_mean"]) - float(c["iou_std"]) for r in runs for c in r["curve"]))
    ymin = math.floor(ymin * 10) / 10

    def xy(x0, n, v):
        t = 0.5 if hi == lo else (math.log2(n) - lo) / (hi - lo)
        return x0 + t * pw, top + ph * (1 - (v - ymin) / (1 - ymin))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">Appendix E: agreement of the σ = 6 masks of two disjoint halves of n samples</text>',
           f'<text x="{left}" y="38" font-size="11">mean ± sd over 20 random a/b splits; solid: overlap, dashed: IoU</text>']
    for k, m in enumerate(models):
        x0 = left + k * (pw + gap)
        out.append(f'<text x="{x0 + pw / 2}" y="{top - 8}" text-anchor="middle" font-weight="bold">{MODEL_NAMES.get(m, m)}</text>')
        steps = int(round((1 - ymin) * 10))
        for j in range(steps + 1):
            v = ymin + j / 10
            _, y = xy(x0, grid[0], v)
            out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>')
            if k == 0:
                out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{100 * v:.0f} %</text>')
        for n in grid:
            x, _ = xy(x0, n, ymin)
            out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{n}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{top + ph + 36}" text-anchor="middle">n samples per half (log scale)</text>')
        out.append(f'<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
        for r in (r for r in runs if r["model"] == m and r["curve"]):
            color = SET_COLORS.get(r["set"], "black")
            for key, dash in (("overlap", ""), ("iou", ' stroke-dasharray="5 3"')):
                upper = [xy(x0, int(c["n"]), min(1.0, float(c[key + "_mean"]) + float(c[key + "_std"]))) for c in r["curve"]]
                lower = [xy(x0, int(c["n"]), float(c[key + "_mean"]) - float(c[key + "_std"])) for c in r["curve"]]
                band = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower[::-1])
                out.append(f'<polygon points="{band}" fill="{color}" fill-opacity="0.10" stroke="none"/>')
                mean = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(x0, int(c["n"]), float(c[key + "_mean"])) for c in r["curve"]))
                out.append(f'<polyline points="{mean}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
    ly = top + 10
    lx = left + len(models) * pw + (len(models) - 1) * gap + 14
    for s in SETS:
        if any(r["set"] == s and r["curve"] for r in runs):
            out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{SET_COLORS[s]}" stroke-width="2"/>')
            out.append(f'<text x="{lx + 30}" y="{ly + 4}">{SET_NAMES[s]}</text>')
            ly += 20
    out.append("</svg>")
    write_atomically(path, "\n".join(out) + "\n")
    return True


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
    write_atomically(path, "\n".join(out) + "\n")


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: table1-report.py RUNS_ROOT [--svg FILE] [--convergence-svg FILE]")
    root = args[0]

    def option(name, default):
        if name not in args:
            return default
        i = args.index(name)
        if i + 1 >= len(args):
            sys.exit(f"table1-report: {name} needs a file name")
        return args[i + 1]

    svg_path = option("--svg", os.path.join(root, "layer-profile.svg"))
    curve_path = option("--convergence-svg", os.path.join(root, "convergence.svg"))
    if not os.path.isdir(root):
        sys.exit(f"table1-report: {root}: no such directory (the runs root scripts/table1.sh writes, e.g. runs/table1)")
    runs = load(root)
    if not runs:
        sys.exit(f"table1-report: {root}: no finished runs (<model>/<set>/report.json)")
    md = table(runs) + "\n\nσ = 6, overlap / IoU in %, mean of the 20 splits of `cnl converge` at each n per half:\n\n" + curve_table(runs)
    print(md)
    write_atomically(os.path.join(root, "table1.md"), md + "\n")
    svg(runs, svg_path)
    wrote = [os.path.join(root, "table1.md"), svg_path]
    if convergence_svg(runs, curve_path):
        wrote.append(curve_path)
    print("\nwrote " + ", ".join(wrote))


if __name__ == "__main__":
    main()
