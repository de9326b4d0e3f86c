// The files of a run directory, each written atomically; report.json last, as the mark of a finished run.
import Foundation
import Shard

public enum RunOutputs {
    public static let reportName = "report.json"

    /// Writes scores.safetensors, neurons.json, convergence.csv/.svg, heatmap.svg, then report.json.
    static func write(result: LocalizationResult, report: RunReport, plan: RunPlan, config: RunConfig) throws {
        let dir = config.output
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
        let (L, J) = (result.layers, result.ffnWidth)
        try SafetensorsWriter.write(scoreTensors(result), metadata: [
            "format": "cnl scores v1",
            "sigmas": result.masks.map { sigmaName($0.sigma) }.joined(separator: ","),
            "spread": config.spread.rawValue,
            "samples": "\(plan.sampleCount)",
            "shape": "[layers=\(L), ffn_width=\(J)]",
        ], to: path("scores.safetensors"))
        try AtomicFile.write(Data(try neuronsJSON(result).utf8), to: path("neurons.json"))
        try AtomicFile.write(Data(convergenceCSV(result).utf8), to: path("convergence.csv"))
        let primary = primaryIndex(result)
        let sigma = result.masks[primary].sigma
        let points = result.convergence.filter { $0.sigma == sigma }.map {
            SVGPlots.ConvergencePoint(n: $0.n, overlap: $0.agreement.overlap, iou: $0.agreement.iou)
        }
        try AtomicFile.write(Data(SVGPlots.convergence(points, title: "Convergence of located neurons (σ = \(sigmaName(sigma)), a vs b)").utf8),
                             to: path("convergence.svg"))
        let whole = result.masks[primary].whole
        try AtomicFile.write(Data(SVGPlots.heatmap(scores: result.score, layers: L, ffnWidth: J, located: Set(whole.located),
                                                   title: "Score over layers × neurons (σ = \(sigmaName(sigma)): \(whole.count) located)").utf8),
                             to: path("heatmap.svg"))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(try enc.encode(report) + Data("\n".utf8), to: path(reportName))
    }

    /// The σ the figures show: 6 (the paper's default) when listed, else the first.
    static func primaryIndex(_ r: LocalizationResult) -> Int { r.masks.firstIndex { $0.sigma == 6 } ?? 0 }

    static func sigmaName(_ s: Double) -> String { String(format: "%g", s) }

    /// Score, Score_a, Score_b as float64 [L, J]; per σ the masks as uint8 [L, J]. Nothing here
    /// depends on timing or rank count, so the bytes are the same for any run of the same plan.
    static func scoreTensors(_ r: LocalizationResult) -> [TensorPayload] {
        let shape = [r.layers, r.ffnWidth]
        var t: [TensorPayload] = [.float64("Score", r.score, shape: shape), .float64("Score_a", r.scoreA, shape: shape),
                                  .float64("Score_b", r.scoreB, shape: shape)]
        func bytes(_ m: NeuronMask) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: r.layers * r.ffnWidth)
            for i in m.located { b[i] = 1 }
            return b
        }
        for m in r.masks {
            let s = sigmaName(m.sigma)
            t.append(.uint8("Mask_sigma\(s)", bytes(m.whole), shape: shape))
            t.append(.uint8("Mask_a_sigma\(s)", bytes(m.a), shape: shape))
            t.append(.uint8("Mask_b_sigma\(s)", bytes(m.b), shape: shape))
        }
        return t
    }

    static func neuronsJSON(_ r: LocalizationResult) throws -> String {
        struct Neuron: Encodable { var layer: Int; var index: Int; var score: Double }
        struct Entry: Encodable { var sigma: Double; var count: Int; var fraction: Double; var neurons: [Neuron] }
        let entries = r.masks.map { m in
            Entry(sigma: m.sigma, count: m.whole.count, fraction: m.whole.fraction,
                  neurons: m.whole.located.map { Neuron(layer: $0 / r.ffnWidth, index: $0 % r.ffnWidth, score: r.score[$0]) })
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(entries), as: UTF8.self) + "\n"
    }

    /// One row per (σ, n); undefined overlap/IoU (an empty mask) are empty fields.
    static func convergenceCSV(_ r: LocalizationResult) -> String {
        var s = "sigma,n,size_a,size_b,intersection,union,overlap,iou\n"
        for p in r.convergence {
            let a = p.agreement
            s += "\(sigmaName(p.sigma)),\(p.n),\(a.sizeA),\(a.sizeB),\(a.intersection),\(a.union),"
            s += "\(a.overlap.map { String(format: "%.6f", $0) } ?? ""),\(a.iou.map { String(format: "%.6f", $0) } ?? "")\n"
        }
        return s
    }
}
