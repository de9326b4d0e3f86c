// The erase study's figures as standalone SVG: Table 3's drops as bars, Fig. 5's cross-dataset heatmap.
import Foundation

public enum EvaluationPlots {
    static let armColors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]   // located, then each baseline

    /// Per evaluation set a row of two panels (accuracy drop, log-likelihood drop); in each, one
    /// group of bars per (located on, σ): the located drop, then each baseline's mean drop with
    /// ±sd error bars and its min–max range as a thin whisker. Zero is the base model.
    public static func eraseBars(_ r: EraseReport) -> String {
        let sets = r.sets.filter { s in r.rows.contains { $0.set == s.name } }
        let groupsMax = sets.map { s in r.rows.filter { $0.set == s.name }.count }.max() ?? 1
        let arms = 1 + r.baselines.count
        let groupWidth = Double(arms) * 14 + 18
        let panelW = max(400, Double(groupsMax) * groupWidth + 90), panelH = 260.0
        let (w, h) = (2 * panelW + 30, 70 + Double(sets.count) * (panelH + 30) + 20)
        var s = SVGPlots.header(w, h)
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Erasing neurons: drop from the base model (positive: erasing hurt)</text>\n"
        // Legend.
        var lx = 20.0
        for (i, name) in (["located"] + r.baselines.map { "\($0.rawValue) (mean ± sd, min–max)" }).enumerated() {
            s += "<rect x=\"\(lx)\" y=\"34\" width=\"12\" height=\"12\" fill=\"\(armColors[i % armColors.count])\"/>"
            s += "<text x=\"\(lx + 16)\" y=\"45\" font-size=\"11\">\(SVGPlots.escape(name))</text>"
            lx += 24 + Double(name.count) * 6.2
        }
        s += "\n"
        for (si, set) in sets.enumerated() {
            let rows = r.rows.filter { $0.set == set.name }
            let y0 = 70 + Double(si) * (panelH + 30)
            for (pi, accuracy) in [true, false].enumerated() {
                let groups = rows.map { row -> (String, [Bar]) in
                    var bars = [Bar(value: accuracy ? row.locatedAccuracyDrop : row.locatedLogLikelihoodDrop, sd: nil, range: nil)]
                    for b in r.baselines {
                        guard let x = row.baselines.first(where: { $0.baseline == b }) else { bars.append(Bar(value: .nan, sd: nil, range: nil)); continue }
                        let base = accuracy ? row.base.accuracy : row.base.logLikelihood
                        let d = accuracy ? x.accuracy : x.logLikelihood
                        bars.append(Bar(value: accuracy ? x.accuracyDrop : x.logLikelihoodDrop, sd: d.sd, range: (base - d.max)...(base - d.min)))
                    }
                    return ("\(row.run) σ\(RunOutputs.sigmaName(row.sigma))", bars)
                }
                let title = "\(set.name) (\(set.task.rawValue), n = \(set.samples)): " + (accuracy ? "accuracy" : "log-likelihood")
                s += panel(x0: 10 + Double(pi) * (panelW + 10), y0: y0, w: panelW, h: panelH, title: title, groups: groups, groupWidth: groupWidth)
            }
        }
        return s + "</svg>\n"
    }

    struct Bar { var value: Double; var sd: Double?; var range: ClosedRange<Double>? }

    static func panel(x0: Double, y0: Double, w: Double, h: Double, title: String, groups: [(String, [Bar])], groupWidth: Double) -> String {
        let (left, bottom, top) = (56.0, 48.0, 22.0)
        var lo = 0.0, hi = 0.0
        for (_, bars) in groups {
            for b in bars where b.value.isFinite {
                lo = min(lo, b.value - (b.sd ?? 0), b.range?.lowerBound ?? 0)
                hi = max(hi, b.value + (b.sd ?? 0), b.range?.upperBound ?? 0)
            }
        }
        if hi - lo < 1e-9 { hi = lo + 1 }
        let pad = 0.08 * (hi - lo)
        (lo, hi) = (lo - (lo < 0 ? pad : 0), hi + pad)
        let plotH = h - top - bottom
        func y(_ v: Double) -> Double { y0 + top + (hi - v) / (hi - lo) * plotH }
        var s = "<text x=\"\(x0 + w / 2)\" y=\"\(y0 + 14)\" text-anchor=\"middle\" font-size=\"12\">\(SVGPlots.escape(title))</text>\n"
        // Ticks at round steps (1, 2 or 5 × 10^k), about five over the range.
        let raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
        for v in stride(from: ceil(lo / step) * step, through: hi, by: step).map({ abs($0) < step / 1000 ? 0 : $0 }) {
            s += "<line x1=\"\(x0 + left)\" y1=\"\(y(v))\" x2=\"\(x0 + w - 8)\" y2=\"\(y(v))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(x0 + left - 6)\" y=\"\(y(v) + 4)\" text-anchor=\"end\" font-size=\"10\">\(String(format: "%g", (v / step).rounded() * step + 0))</text>\n"
        }
        s += "<line x1=\"\(x0 + left)\" y1=\"\(y(0))\" x2=\"\(x0 + w - 8)\" y2=\"\(y(0))\" stroke=\"#333\"/>\n"
        for (g, (label, bars)) in groups.enumerated() {
            let gx = x0 + left + 10 + Double(g) * groupWidth
            for (i, b) in bars.enumerated() where b.value.isFinite {
                let bx = gx + Double(i) * 14
                let (ya, yb) = (y(max(0, b.value)), y(min(0, b.value)))
                s += "<rect x=\"\(bx)\" y=\"\(ya)\" width=\"12\" height=\"\(max(0.5, yb - ya))\" fill=\"\(armColors[i % armColors.count])\"/>"
                if let r = b.range {
                    s += "<line x1=\"\(bx + 6)\" y1=\"\(y(r.lowerBound))\" x2=\"\(bx + 6)\" y2=\"\(y(r.upperBound))\" stroke=\"#555\" stroke-width=\"0.8\"/>"
                }
                if let sd = b.sd, sd > 0 {
                    s += "<line x1=\"\(bx + 6)\" y1=\"\(y(b.value - sd))\" x2=\"\(bx + 6)\" y2=\"\(y(b.value + sd))\" stroke=\"black\" stroke-width=\"1.6\"/>"
                    for v in [b.value - sd, b.value + sd] {
                        s += "<line x1=\"\(bx + 2)\" y1=\"\(y(v))\" x2=\"\(bx + 10)\" y2=\"\(y(v))\" stroke=\"black\" stroke-width=\"1.2\"/>"
                    }
                }
            }
            let tx = gx + Double(bars.count) * 7, ty = y0 + h - bottom + 12
            s += "<text x=\"\(tx)\" y=\"\(ty)\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-30 \(tx) \(ty))\">\(SVGPlots.escape(label))</text>\n"
        }
        return s
    }

    /// Rows: the run the neurons were located on; columns: the set evaluated. Each cell: the
    /// located drop minus the mean drop of the first baseline's draws (positive, red: the located
    /// neurons matter more for that set than random ones), by accuracy and by log-likelihood.
    public static func crossHeatmap(_ r: EraseReport, sigma: Double) -> String {
        let baseline = r.baselines.first
        func gap(_ run: String, _ set: String, accuracy: Bool) -> Double? {
            guard let row = r.rows.first(where: { $0.run == run && $0.set == set && $0.sigma == sigma }),
                  let b = row.baselines.first(where: { $0.baseline == baseline }) else { return nil }
            return accuracy ? row.locatedAccuracyDrop - b.accuracyDrop : row.locatedLogLikelihoodDrop - b.logLikelihoodDrop
        }
        return crossGrid(title: "Cross-dataset erase (σ = \(RunOutputs.sigmaName(sigma))): located drop − mean \(baseline?.rawValue ?? "random") drop",
                         rows: r.runs.map(\.name), rowLabel: "located on", columns: r.sets.map(\.name), value: gap,
                         note: "red: erasing the located neurons hurt that set more than random neurons; blue: less; grey: not evaluated")
    }

    /// Two heatmaps side by side (accuracy, answer log-likelihood) of `value(row, column, accuracy)`:
    /// red positive, blue negative, each panel scaled to its largest magnitude; grey where nil.
    static func crossGrid(title: String, rows: [String], rowLabel: String, columns sets: [String],
                          value gap: (String, String, Bool) -> Double?, note: String) -> String {
        let runs = rows
        let cw = 92.0, ch = 34.0, left = 120.0, top = 84.0
        let panelW = left + cw * Double(sets.count) + 20
        let (w, h) = (2 * panelW + 20, top + ch * Double(runs.count) + 60)
        var s = SVGPlots.header(w, h)
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(SVGPlots.escape(title))</text>\n"
        for (pi, accuracy) in [true, false].enumerated() {
            let x0 = 10 + Double(pi) * (panelW + 10)
            let values = runs.flatMap { run in sets.compactMap { gap(run, $0, accuracy) } }
            let scale = max(values.map(abs).max() ?? 0, 1e-12)
            s += "<text x=\"\(x0 + left + cw * Double(sets.count) / 2)\" y=\"46\" text-anchor=\"middle\" font-size=\"13\">\(accuracy ? "accuracy" : "answer log-likelihood")</text>\n"
            for (c, set) in sets.enumerated() {
                s += "<text x=\"\(x0 + left + cw * (Double(c) + 0.5))\" y=\"\(top - 8)\" text-anchor=\"middle\" font-size=\"11\">\(SVGPlots.escape(set))</text>"
            }
            s += "<text x=\"\(x0 + left + cw * Double(sets.count) / 2)\" y=\"\(top - 26)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555\">evaluated on</text>\n"
            for (rr, run) in runs.enumerated() {
                let yy = top + ch * Double(rr)
                s += "<text x=\"\(x0 + left - 6)\" y=\"\(yy + ch / 2 + 4)\" text-anchor=\"end\" font-size=\"11\">\(SVGPlots.escape(run))</text>"
                for (c, set) in sets.enumerated() {
                    let xx = x0 + left + cw * Double(c)
                    guard let v = gap(run, set, accuracy) else {
                        s += "<rect x=\"\(xx)\" y=\"\(yy)\" width=\"\(cw)\" height=\"\(ch)\" fill=\"#f0f0f0\" stroke=\"white\"/>"
                        s += "<text x=\"\(xx + cw / 2)\" y=\"\(yy + ch / 2 + 4)\" text-anchor=\"middle\" font-size=\"11\" fill=\"#999\">–</text>"
                        continue
                    }
                    let t = min(1, abs(v) / scale)
                    let (r0, g0, b0) = v >= 0 ? (214.0, 39.0, 40.0) : (31.0, 119.0, 180.0)
                    let mix = { (c: Double) in Int(255 + (c - 255) * t) }
                    let color = String(format: "#%02x%02x%02x", mix(r0), mix(g0), mix(b0))
                    s += "<rect class=\"cell\" x=\"\(xx)\" y=\"\(yy)\" width=\"\(cw)\" height=\"\(ch)\" fill=\"\(color)\" stroke=\"white\"/>"
                    s += "<text x=\"\(xx + cw / 2)\" y=\"\(yy + ch / 2 + 4)\" text-anchor=\"middle\" font-size=\"11\" fill=\"\(t > 0.6 ? "white" : "black")\">\(String(format: "%+.3f", v))</text>"
                }
                s += "\n"
            }
            s += "<text x=\"\(x0 + 14)\" y=\"\(top + ch * Double(runs.count) / 2)\" font-size=\"11\" fill=\"#555\" text-anchor=\"middle\" transform=\"rotate(-90 \(x0 + 14) \(top + ch * Double(runs.count) / 2))\">\(SVGPlots.escape(rowLabel))</text>\n"
        }
        s += "<text x=\"20\" y=\"\(h - 16)\" font-size=\"11\" fill=\"#555\">\(SVGPlots.escape(note))</text>\n"
        return s + "</svg>\n"
    }
}
