// Files of `cnl evaluate` and `cnl erase`: JSON, CSV and the Markdown tables a person reads.
import Foundation
import Shard

public enum EvaluationOutputs {
    static func json<T: Encodable>(_ value: T) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try enc.encode(value) + Data("\n".utf8)
    }

    /// samples.csv: one row per sample, in sample order.
    static func samplesCSV(_ outcomes: [ItemOutcome], task: EvaluationTask) -> String {
        var s = "index,line,prediction,gold,correct,log_likelihood" + (task.kind == .generate ? ",completion" : ",option_scores") + "\n"
        for o in outcomes {
            let extra = task.kind == .generate ? csvField(o.completion ?? "")
                                               : csvField((o.optionScores ?? []).map { String(format: "%.6f", $0) }.joined(separator: ";"))
            s += "\(o.index),\(o.line),\(csvField(o.prediction)),\(csvField(o.gold)),\(o.correct ? 1 : 0),\(String(format: "%.8f", o.logLikelihood)),\(extra)\n"
        }
        return s
    }

    /// RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled.
    static func csvField(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

public enum EraseOutputs {
    public static let files = ["erase.json", "erase.csv", "erase.md", "erase.svg", "cross.csv", "cross.svg"]

    static func write(_ r: EraseReport, to dir: String) throws {
        func path(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }
        try AtomicFile.write(try EvaluationOutputs.json(r), to: path("erase.json"))
        try AtomicFile.write(Data(csv(r).utf8), to: path("erase.csv"))
        try AtomicFile.write(Data(markdown(r).utf8), to: path("erase.md"))
        try AtomicFile.write(Data(EvaluationPlots.eraseBars(r).utf8), to: path("erase.svg"))
        try AtomicFile.write(Data(crossCSV(r).utf8), to: path("cross.csv"))
        try AtomicFile.write(Data(EvaluationPlots.crossHeatmap(r, sigma: crossSigma(r)).utf8), to: path("cross.svg"))
    }

    /// The σ of the cross matrix: the study's cross σ, else 6 when computed, else the first.
    static func crossSigma(_ r: EraseReport) -> Double { r.crossSigma ?? (r.sigmas.contains(6) ? 6 : r.sigmas.first ?? 6) }

    static func f(_ v: Double, _ digits: Int = 4) -> String { v.isFinite ? String(format: "%.\(digits)f", v) : "" }

    /// erase.csv: one row per (run, set, σ, arm); arm base, located or a baseline (its draws' statistics).
    static func csv(_ r: EraseReport) -> String {
        var s = "run,set,sigma,neurons,arm,draws,accuracy,accuracy_sd,accuracy_min,accuracy_max,log_likelihood,log_likelihood_sd,log_likelihood_min,log_likelihood_max,accuracy_drop,log_likelihood_drop,ipp_accuracy,ipp_log_likelihood\n"
        for row in r.rows {
            let head = "\(EvaluationOutputs.csvField(row.run)),\(EvaluationOutputs.csvField(row.set)),\(RunOutputs.sigmaName(row.sigma)),\(row.neurons)"
            s += "\(head),base,1,\(f(row.base.accuracy)),,,,\(f(row.base.logLikelihood)),,,,0,0,,\n"
            s += "\(head),located,1,\(f(row.located.accuracy)),,,,\(f(row.located.logLikelihood)),,,,\(f(row.locatedAccuracyDrop)),\(f(row.locatedLogLikelihoodDrop)),,\n"
            for b in row.baselines {
                s += "\(head),\(b.baseline.rawValue),\(b.draws),\(f(b.accuracy.mean)),\(f(b.accuracy.sd)),\(f(b.accuracy.min)),\(f(b.accuracy.max)),"
                s += "\(f(b.logLikelihood.mean)),\(f(b.logLikelihood.sd)),\(f(b.logLikelihood.min)),\(f(b.logLikelihood.max)),"
                s += "\(f(b.accuracyDrop)),\(f(b.logLikelihoodDrop)),\(f(b.ippAccuracy)),\(f(b.ippLogLikelihood))\n"
            }
        }
        return s
    }

    /// Fig. 5's erase side: located drop minus the mean random drop, per (run, set, σ, baseline).
    static func crossCSV(_ r: EraseReport) -> String {
        var s = "located_on,evaluated_on,sigma,baseline,neurons,located_accuracy_drop,random_accuracy_drop,accuracy_gap,located_log_likelihood_drop,random_log_likelihood_drop,log_likelihood_gap\n"
        for row in r.rows {
            for b in row.baselines {
                s += "\(EvaluationOutputs.csvField(row.run)),\(EvaluationOutputs.csvField(row.set)),\(RunOutputs.sigmaName(row.sigma)),\(b.baseline.rawValue),\(row.neurons),"
                s += "\(f(row.locatedAccuracyDrop)),\(f(b.accuracyDrop)),\(f(row.locatedAccuracyDrop - b.accuracyDrop)),"
                s += "\(f(row.locatedLogLikelihoodDrop)),\(f(b.logLikelihoodDrop)),\(f(row.locatedLogLikelihoodDrop - b.logLikelihoodDrop))\n"
            }
        }
        return s
    }

    /// erase.md: per evaluation set, Table 3 by accuracy and by log-likelihood.
    static func markdown(_ r: EraseReport) -> String {
        var s = "# Erasing located neurons (Table 3)\n\n"
        s += "Model `\(r.modelPath)` (sha256 \(r.modelSHA256.prefix(12))…). Random baselines: \(r.baselines.map(\.rawValue).joined(separator: ", ")), "
        s += "\(r.randomSeeds) draws each (seeds 0–\(max(0, r.randomSeeds - 1))). Drops are base − erased (positive: erasing hurt). "
        s += "IPP = located drop − the largest drop of any random draw (positive: the located neurons hurt more than every draw).\n"
        func pm(_ d: DrawSummary) -> String { "\(f(d.mean)) ± \(f(d.sd)) [\(f(d.min)), \(f(d.max))]" }
        for set in r.sets {
            let rows = r.rows.filter { $0.set == set.name }
            guard let base = rows.first?.base else { continue }
            s += "\n## Evaluated on \(set.name) (\(set.task.rawValue), \(set.samples) samples)\n\n"
            s += "Base: accuracy \(f(base.accuracy)) (Wilson 95 % \(f(base.accuracyLow))–\(f(base.accuracyHigh))), "
            s += "answer log-likelihood \(f(base.logLikelihood)) ± \(f(base.logLikelihoodSE)) (SE).\n"
            for (title, acc) in [("Accuracy", true), ("Answer log-likelihood", false)] {
                s += "\n**\(title)**\n\n| located on | σ | neurons | located (drop) |"
                for b in r.baselines { s += " \(b.rawValue): mean ± sd [min, max] (drop) | IPP vs \(b.rawValue) |" }
                s += "\n|---|---|---|---|" + String(repeating: "---|---|", count: r.baselines.count) + "\n"
                for row in rows {
                    let lv = acc ? row.located.accuracy : row.located.logLikelihood
                    let ld = acc ? row.locatedAccuracyDrop : row.locatedLogLikelihoodDrop
                    s += "| \(row.run) | \(RunOutputs.sigmaName(row.sigma)) | \(row.neurons) | \(f(lv)) (\(f(ld))) |"
                    for b in r.baselines {
                        if let x = row.baselines.first(where: { $0.baseline == b }) {
                            let ipp = acc ? x.ippAccuracy : x.ippLogLikelihood
                            s += " \(pm(acc ? x.accuracy : x.logLikelihood)) (\(f(acc ? x.accuracyDrop : x.logLikelihoodDrop))) | \(ipp > 0 ? "**\(f(ipp))**" : f(ipp)) |"
                        } else { s += " – | – |" }
                    }
                    s += "\n"
                }
            }
        }
        return s
    }
}
