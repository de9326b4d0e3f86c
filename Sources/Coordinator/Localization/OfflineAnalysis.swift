// After a run: Appendix E curves from the per-sample store (any grid, re-drawn splits) and new σ masks.
import Engine
import Foundation
import Shard

public enum OfflineAnalysis {
    /// A finished run directory's report.
    public static func loadReport(run: String) throws -> RunReport {
        let path = (run as NSString).appendingPathComponent(RunOutputs.reportName)
        guard let data = FileManager.default.contents(atPath: path) else { throw OfflineError.notARun(path: run) }
        do { return try JSONDecoder().decode(RunReport.self, from: data) } catch {
            throw OfflineError.badReport(path: path, detail: error.localizedDescription)
        }
    }

    // MARK: cnl converge

    public struct CurvePoint: Codable, Sendable {
        public var seed: UInt64
        public var sigma: Double
        public var n: Int
        public var agreement: OverlapMetrics
    }

    public struct SummaryPoint: Codable, Sendable {
        public struct Stats: Codable, Sendable {
            /// Draws where the value is defined (both masks non-empty).
            public var defined: Int
            public var mean: Double?
            public var std: Double?
            public var min: Double?
            public var max: Double?
        }
        public var sigma: Double
        public var n: Int
        public var draws: Int
        public var overlap: Stats
        public var iou: Stats
    }

    public struct ConvergeResult: Sendable {
        public var grid: [Int]
        public var seeds: [UInt64]
        public var curves: [CurvePoint]
        public var summary: [SummaryPoint]
        public var outputDirectory: String
    }

    /// Appendix E from stored scores: for each of `seeds` splits (the run's own seed first, then
    /// seed+1, …) the nested prefixes of a and b at every n of `grid`, located separately.
    /// Sums are exact, so with an f64 store the run's own split reproduces the in-run curve bit for bit.
    public static func converge(run: String, grid requested: [Int]?, seeds: Int, sigmas requestedSigmas: [Double]?,
                                log: (String) -> Void) throws -> ConvergeResult {
        let report = try loadReport(run: run)
        let index = try PerSampleIndex.load(run: run)
        let count = index.samples.count
        guard count == report.data.samples else {
            throw OfflineError.incompleteStore(path: run, stored: count, samples: report.data.samples)
        }
        guard seeds >= 1 && seeds <= 100_000 else { throw OfflineError.badOption("--seeds must be between 1 and 100000, got \(seeds)") }
        let half = count / 2
        let grid = requested ?? report.grid
        guard !grid.isEmpty, grid == grid.sorted(), Set(grid).count == grid.count, grid.allSatisfy({ $0 >= 1 && $0 <= half }) else {
            throw OfflineError.badOption("--grid must be increasing sizes between 1 and \(half) (the smaller half), got \(grid)")
        }
        let sigmas = requestedSigmas ?? report.config.sigmas
        guard !sigmas.isEmpty, sigmas.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw OfflineError.badOption("σ must be positive, got \(sigmas)") }
        let (L, J) = (index.shape[0], index.shape[1])
        log("cnl converge: reading \(count) stored scores (\(index.precision.rawValue)) from \(run)/\(PerSampleIndex.directoryName)")
        var scores = [[Double]](repeating: [], count: count)
        for e in index.samples {
            guard e.index >= 0 && e.index < count, scores[e.index].isEmpty else {
                throw StoreError.malformed(path: run, detail: "sample \(e.index) is listed twice or out of range")
            }
            scores[e.index] = try index.scores(of: e, run: run)
        }
        var curves: [CurvePoint] = []
        let seedList = (0..<seeds).map { index.seed &+ UInt64($0) }
        for seed in seedList {
            let split = ABSplit(count: count, seed: seed)
            let (a, b) = (Array(split.a), Array(split.b))
            var sumA = ExactAccumulator(count: L * J), sumB = ExactAccumulator(count: L * J)
            var next = 0
            for n in grid {
                while next < n { try sumA.add(scores[a[next]]); try sumB.add(scores[b[next]]); next += 1 }
                let (meanA, meanB) = (sumA.means(), sumB.means())
                for sigma in sigmas {
                    let ma = NeuronMask(scores: meanA, layers: L, ffnWidth: J, sigma: sigma, spread: report.config.spread)
                    let mb = NeuronMask(scores: meanB, layers: L, ffnWidth: J, sigma: sigma, spread: report.config.spread)
                    curves.append(CurvePoint(seed: seed, sigma: sigma, n: n, agreement: OverlapMetrics(ma, mb)))
                }
            }
            if seeds > 1 { log("cnl converge: split \(seed - index.seed + 1)/\(seeds) done") }
        }
        func stats(_ v: [Double?]) -> SummaryPoint.Stats {
            let d = v.compactMap { $0 }
            guard !d.isEmpty else { return .init(defined: 0, mean: nil, std: nil, min: nil, max: nil) }
            let mean = d.reduce(0, +) / Double(d.count)
            let variance = d.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(d.count)
            return .init(defined: d.count, mean: mean, std: variance.squareRoot(), min: d.min(), max: d.max())
        }
        var summary: [SummaryPoint] = []
        for sigma in sigmas {
            for n in grid {
                let here = curves.filter { $0.sigma == sigma && $0.n == n }
                summary.append(SummaryPoint(sigma: sigma, n: n, draws: here.count, overlap: stats(here.map(\.agreement.overlap)),
                                            iou: stats(here.map(\.agreement.iou))))
            }
        }
        let out = (run as NSString).appendingPathComponent("converge")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        func f(_ v: Double?) -> String { v.map { String(format: "%.6f", $0) } ?? "" }
        var curvesCSV = "seed,sigma,n,size_a,size_b,intersection,union,overlap,iou\n"
        for c in curves {
            let g = c.agreement
            curvesCSV += "\(c.seed),\(RunOutputs.sigmaName(c.sigma)),\(c.n),\(g.sizeA),\(g.sizeB),\(g.intersection),\(g.union),\(f(g.overlap)),\(f(g.iou))\n"
        }
        var summaryCSV = "sigma,n,draws,overlap_defined,overlap_mean,overlap_std,overlap_min,overlap_max,iou_defined,iou_mean,iou_std,iou_min,iou_max\n"
        for s in summary {
            summaryCSV += "\(RunOutputs.sigmaName(s.sigma)),\(s.n),\(s.draws),\(s.overlap.defined),\(f(s.overlap.mean)),\(f(s.overlap.std)),\(f(s.overlap.min)),\(f(s.overlap.max)),"
            summaryCSV += "\(s.iou.defined),\(f(s.iou.mean)),\(f(s.iou.std)),\(f(s.iou.min)),\(f(s.iou.max))\n"
        }
        try AtomicFile.write(Data(curvesCSV.utf8), to: (out as NSString).appendingPathComponent("curves.csv"))
        try AtomicFile.write(Data(summaryCSV.utf8), to: (out as NSString).appendingPathComponent("summary.csv"))
        let sigma = sigmas.contains(6) ? 6 : sigmas[0]
        let mine = summary.filter { $0.sigma == sigma }
        let points = mine.map { SVGPlots.ConvergencePoint(n: $0.n, overlap: $0.overlap.mean, iou: $0.iou.mean) }
        func band(_ s: SummaryPoint.Stats) -> ClosedRange<Double>? {
            guard let m = s.mean, let d = s.std else { return nil }
            return (m - d)...(m + d)
        }
        let bands = seeds > 1 ? mine.map { SVGPlots.Band(n: $0.n, overlap: band($0.overlap), iou: band($0.iou)) } : []
        let title = seeds > 1 ? "Convergence, σ = \(RunOutputs.sigmaName(sigma)): mean ± std over \(seeds) a/b splits"
                              : "Convergence, σ = \(RunOutputs.sigmaName(sigma)) (split seed \(index.seed))"
        try AtomicFile.write(Data(SVGPlots.convergence(points, title: title, bands: bands).utf8),
                             to: (out as NSString).appendingPathComponent("convergence.svg"))
        return ConvergeResult(grid: grid, seeds: seedList, curves: curves, summary: summary, outputDirectory: out)
    }

    // MARK: cnl rescore

    public struct RescoreResult: Sendable {
        public var results: [SigmaResult]
        public var outputPath: String
    }

    /// New σ (and spread) masks and Eq. 9 metrics from the run's float64 Score tensors, no recomputation.
    public static func rescore(run: String, sigmas: [Double], spread: Spread) throws -> RescoreResult {
        guard !sigmas.isEmpty, sigmas.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw OfflineError.badOption("--sigma must be positive numbers, got \(sigmas)")
        }
        let path = (run as NSString).appendingPathComponent("scores.safetensors")
        guard FileManager.default.fileExists(atPath: path) else { throw OfflineError.notARun(path: run) }
        let file = try SafetensorsFile(path: path)
        let shape = try file.entry("Score").shape
        guard shape.count == 2 else { throw OfflineError.badReport(path: path, detail: "Score has shape \(shape), expected [L, J]") }
        let (L, J) = (shape[0], shape[1])
        let (score, a, b) = (try file.readDoubles("Score"), try file.readDoubles("Score_a"), try file.readDoubles("Score_b"))
        var results: [SigmaResult] = []
        var tensors: [TensorPayload] = []
        for sigma in sigmas {
            let masks = [score, a, b].map { NeuronMask(scores: $0, layers: L, ffnWidth: J, sigma: sigma, spread: spread) }
            results.append(SigmaResult(sigma: sigma, whole: MaskSummary(masks[0]), a: MaskSummary(masks[1]), b: MaskSummary(masks[2]),
                                       agreement: OverlapMetrics(masks[1], masks[2])))
            for (prefix, m) in zip(["Mask_sigma", "Mask_a_sigma", "Mask_b_sigma"], masks) {
                var bytes = [UInt8](repeating: 0, count: L * J)
                for i in m.located { bytes[i] = 1 }
                tensors.append(.uint8("\(prefix)\(RunOutputs.sigmaName(sigma))", bytes, shape: [L, J]))
            }
        }
        let name = "rescore-\(spread.rawValue)-sigma" + sigmas.map(RunOutputs.sigmaName).joined(separator: "_")
        let out = (run as NSString).appendingPathComponent(name)
        try SafetensorsWriter.write(tensors, metadata: ["spread": spread.rawValue], to: out + ".safetensors")
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try enc.encode(results) + Data("\n".utf8), to: out + ".json")
        return RescoreResult(results: results, outputPath: out)
    }
}

public enum OfflineError: Error, LocalizedError, Equatable {
    case notARun(path: String)
    case badReport(path: String, detail: String)
    case incompleteStore(path: String, stored: Int, samples: Int)
    case badOption(String)

    public var errorDescription: String? {
        switch self {
        case let .notARun(p): return "\(p): not a finished run directory (no report.json or scores.safetensors); run `cnl locate` first"
        case let .badReport(p, d): return "\(p): cannot read (\(d))"
        case let .incompleteStore(p, s, n): return "\(p): the per-sample store holds \(s) of the run's \(n) samples"
        case let .badOption(m): return m
        }
    }
}
