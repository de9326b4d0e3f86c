// The run's figures as standalone SVG: the paper's Fig. 6 (convergence) and Fig. 4 (heatmap).
import Foundation

public enum SVGPlots {
    /// One Appendix E point: size n with overlap and IoU (nil where a mask was empty).
    public struct ConvergencePoint: Sendable, Equatable {
        public var n: Int
        public var overlap: Double?
        public var iou: Double?
        public init(n: Int, overlap: Double?, iou: Double?) { self.n = n; self.overlap = overlap; self.iou = iou }
    }

    /// The spread of one curve at n over several a/b draws (e.g. mean ± std, clipped to [0, 1]).
    public struct Band: Sendable, Equatable {
        public var n: Int
        public var overlap: ClosedRange<Double>?
        public var iou: ClosedRange<Double>?
        public init(n: Int, overlap: ClosedRange<Double>?, iou: ClosedRange<Double>?) { self.n = n; self.overlap = overlap; self.iou = iou }
    }

    /// Overlap and IoU against n (log-scaled x when n spans more than a factor of 4), y in [0, 1];
    /// `bands` (from re-drawn splits) are shaded behind the curves.
    public static func convergence(_ points: [ConvergencePoint], title: String, bands: [Band] = []) -> String {
        let (w, h, left, right, top, bottom) = (640.0, 400.0, 64.0, 24.0, 40.0, 56.0)
        let ns = points.map { Double($0.n) }
        let lo = ns.min() ?? 1, hi = max(ns.max() ?? 1, lo + 1)
        let logX = hi / max(lo, 1) > 4
        func x(_ n: Double) -> Double {
            let f = logX ? (log(n) - log(lo)) / (log(hi) - log(lo)) : (n - lo) / (hi - lo)
            return left + f * (w - left - right)
        }
        func y(_ v: Double) -> Double { top + (1 - v) * (h - top - bottom) }
        var s = header(w, h) + "<text x=\"\(w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        // Axes, grid and ticks.
        for v in stride(from: 0.0, through: 1.0, by: 0.2) {
            s += "<line x1=\"\(left)\" y1=\"\(y(v))\" x2=\"\(w - right)\" y2=\"\(y(v))\" stroke=\"#ddd\"/>"
            s += "<text x=\"\(left - 8)\" y=\"\(y(v) + 4)\" text-anchor=\"end\" font-size=\"11\">\(String(format: "%.1f", v))</text>\n"
        }
        for n in ns {
            s += "<text x=\"\(x(n))\" y=\"\(h - bottom + 18)\" text-anchor=\"middle\" font-size=\"11\">\(Int(n))</text>\n"
        }
        s += "<line x1=\"\(left)\" y1=\"\(h - bottom)\" x2=\"\(w - right)\" y2=\"\(h - bottom)\" stroke=\"#333\"/>"
        s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(h - bottom)\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(w / 2)\" y=\"\(h - 14)\" text-anchor=\"middle\" font-size=\"12\">samples per half (n)\(logX ? ", log scale" : "")</text>\n"
        for (name, color, range) in [("overlap-band", "#1f77b4", \Band.overlap), ("IoU-band", "#d62728", \Band.iou)] {
            let defined = bands.compactMap { b in b[keyPath: range].map { (Double(b.n), $0) } }
            guard defined.count > 1 else { continue }
            let upper = defined.map { "\(x($0.0)),\(y(min(1, $0.1.upperBound)))" }
            let lower = defined.reversed().map { "\(x($0.0)),\(y(max(0, $0.1.lowerBound)))" }
            s += "<polygon class=\"\(name)\" fill=\"\(color)\" fill-opacity=\"0.18\" stroke=\"none\" points=\"\((upper + lower).joined(separator: " "))\"/>\n"
        }
        for (name, color, value) in [("overlap", "#1f77b4", \ConvergencePoint.overlap), ("IoU", "#d62728", \ConvergencePoint.iou)] {
            // Lines only through runs of defined points: an empty mask leaves a gap, not a zero.
            var runs: [[(Double, Double)]] = [[]]
            for p in points {
                if let v = p[keyPath: value] { runs[runs.count - 1].append((x(Double(p.n)), y(v))) } else if !runs[runs.count - 1].isEmpty { runs.append([]) }
            }
            for run in runs where run.count > 1 {
                s += "<polyline class=\"\(name)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(run.map { "\($0.0),\($0.1)" }.joined(separator: " "))\"/>\n"
            }
            for (px, py) in runs.joined() { s += "<circle class=\"\(name)\" cx=\"\(px)\" cy=\"\(py)\" r=\"3.5\" fill=\"\(color)\"/>\n" }
        }
        // Legend top-left: curves start low at small n and rise toward 1.
        let lx = left + 10
        s += "<rect x=\"\(lx)\" y=\"\(top + 6)\" width=\"92\" height=\"40\" fill=\"white\" stroke=\"#ccc\"/>"
        s += "<line x1=\"\(lx + 8)\" y1=\"\(top + 18)\" x2=\"\(lx + 28)\" y2=\"\(top + 18)\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"\(lx + 34)\" y=\"\(top + 22)\" font-size=\"11\">overlap</text>"
        s += "<line x1=\"\(lx + 8)\" y1=\"\(top + 36)\" x2=\"\(lx + 28)\" y2=\"\(top + 36)\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"\(lx + 34)\" y=\"\(top + 40)\" font-size=\"11\">IoU</text>\n"
        return s + "</svg>\n"
    }

    /// Layers (rows) × neuron index (columns of `bin` neighbouring neurons): each cell's shade is
    /// √(largest |score| in it / largest overall); cells holding a located
    /// neuron are outlined. As the paper's Fig. 4.
    public static func heatmap(scores: [Double], layers: Int, ffnWidth: Int, located: Set<Int>, bin: Int = 100, title: String) -> String {
        let columns = (ffnWidth + bin - 1) / bin
        var cell = [Double](repeating: 0, count: layers * columns)
        var marked = Set<Int>()
        for l in 0..<layers {
            for j in 0..<ffnWidth {
                let c = l * columns + j / bin
                cell[c] = max(cell[c], abs(scores[l * ffnWidth + j]))
                if located.contains(l * ffnWidth + j) { marked.insert(c) }
            }
        }
        let top = cell.max() ?? 0
        let (cw, ch, left, topPad) = (max(6.0, 560.0 / Double(columns)), max(6.0, 420.0 / Double(layers)), 56.0, 40.0)
        let (w, h) = (left + cw * Double(columns) + 90, topPad + ch * Double(layers) + 48)
        var s = header(w, h) + "<text x=\"\(w / 2)\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for l in 0..<layers {
            let yy = topPad + ch * Double(l)
            if l % max(1, layers / 10) == 0 {
                s += "<text x=\"\(left - 6)\" y=\"\(yy + ch * 0.75)\" text-anchor=\"end\" font-size=\"10\">\(l)</text>\n"
            }
            for c in 0..<columns {
                // Square-root shading: a linear scale leaves all but the strongest bins white.
                let v = top > 0 ? (cell[l * columns + c] / top).squareRoot() : 0
                // White → dark blue.
                let shade = { (a: Double, b: Double) in Int(a + (b - a) * v) }
                let color = String(format: "#%02x%02x%02x", shade(255, 8), shade(255, 48), shade(255, 107))
                let stroke = marked.contains(l * columns + c) ? " stroke=\"#d62728\" stroke-width=\"1.5\" class=\"located\"" : ""
                s += "<rect x=\"\(left + cw * Double(c))\" y=\"\(yy)\" width=\"\(cw)\" height=\"\(ch)\" fill=\"\(color)\"\(stroke)/>"
            }
            s += "\n"
        }
        let every = max(1, columns / 8)
        for c in stride(from: 0, to: columns, by: every) {
            s += "<text x=\"\(left + cw * Double(c))\" y=\"\(topPad + ch * Double(layers) + 14)\" font-size=\"10\">\(c * bin)</text>"
        }
        s += "\n<text x=\"\(left + cw * Double(columns) / 2)\" y=\"\(h - 10)\" text-anchor=\"middle\" font-size=\"12\">neuron index (bins of \(bin))</text>\n"
        s += "<text x=\"16\" y=\"\(topPad + ch * Double(layers) / 2)\" font-size=\"12\" transform=\"rotate(-90 16 \(topPad + ch * Double(layers) / 2))\" text-anchor=\"middle\">layer</text>\n"
        s += "<text x=\"\(left + cw * Double(columns) + 8)\" y=\"\(topPad + 12)\" font-size=\"11\">max |score|</text>"
        s += "<text x=\"\(left + cw * Double(columns) + 8)\" y=\"\(topPad + 28)\" font-size=\"11\">\(String(format: "%.3g", top))</text>"
        s += "<text x=\"\(left + cw * Double(columns) + 8)\" y=\"\(topPad + 48)\" font-size=\"11\" fill=\"#d62728\">□ located</text>\n"
        return s + "</svg>\n"
    }

    static func header(_ w: Double, _ h: Double) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" font-family=\"Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }
}
