// Files of `cnl enhance`: enhance.json, enhance.csv, enhance.md (Table 2, the cross matrix,
// Table 5), enhance.svg (changes per epoch) and cross.csv / cross.svg (Fig. 5a).
import Foundation
import Shard

public enum EnhanceOutputs {
    public static let files = ["enhance.json", "enhance.csv", "enhance.md", "enhance.svg", "cross.csv", "cross.svg"]

    static func write(_ r: EnhanceReport, to dir: String) throws {
        func path(_ n: String) -> String { (dir as NSString).appendingPathComponent(n) }
        try AtomicFile.write(try EvaluationOutputs.json(r), to: path("enhance.json"))
        try AtomicFile.write(Data(csv(r).utf8), to: path("enhance.csv"))
        try AtomicFile.write(Data(markdown(r).utf8), to: path("enhance.md"))
        try AtomicFile.write(Data(bars(r).utf8), to: path("enhance.svg"))
        try AtomicFile.write(Data(crossCSV(r).utf8), to: path("cross.csv"))
        try AtomicFile.write(Data(crossHeatmap(r).utf8), to: path("cross.svg"))
    }

    static func f(_ v: Double, _ digits: Int = 4) -> String { EraseOutputs.f(v, digits) }
    static func signed(_ v: Double) -> String { v.isFinite ? String(format: "%+.4f", v) : "" }

    /// One line per arm (each random seed its own), epoch and set.
    static func csv(_ r: EnhanceReport) -> String {
        var s = "train,arm,seed,trained,erased,epoch,train_loss,set,accuracy,log_likelihood,accuracy_change,log_likelihood_change,base_accuracy,base_log_likelihood\n"
        for a in r.arms {
            for e in a.epochs {
                for set in r.sets {
                    guard let st = e.sets[set.name], let b = r.base[set.name] else { continue }
                    s += "\(EvaluationOutputs.csvField(a.train)),\(a.arm.rawValue),\(a.seed.map(String.init) ?? ""),\(a.trained),\(a.erased),\(e.epoch),"
                    s += "\(e.trainLoss.map { String(format: "%.6f", $0) } ?? ""),\(EvaluationOutputs.csvField(set.name)),\(f(st.accuracy)),\(f(st.logLikelihood)),"
                    s += "\(f(st.accuracy - b.accuracy)),\(f(st.logLikelihood - b.logLikelihood)),\(f(b.accuracy)),\(f(b.logLikelihood))\n"
                }
            }
        }
        return s
    }

    /// The cross-dataset cell at the last epoch: the located arm's change minus the random arm's
    /// mean change (the located change alone when there is no random arm).
    static func crossValue(_ r: EnhanceReport, train: String, set: String, accuracy: Bool) -> Double? {
        guard let epoch = r.epochs.last, let row = r.rows.first(where: { $0.train == train && $0.set == set && $0.epoch == epoch }),
              let located = row.located else { return nil }
        let l = accuracy ? located.accuracyChange : located.logLikelihoodChange
        guard let random = row.random else { return l }
        return l - (accuracy ? random.accuracyChange : random.logLikelihoodChange)
    }

    static func crossCSV(_ r: EnhanceReport) -> String {
        var s = "train,set,epoch,same_data,located_accuracy_change,random_accuracy_change,located_minus_random_accuracy,"
            + "located_log_likelihood_change,random_log_likelihood_change,located_minus_random_log_likelihood\n"
        guard let epoch = r.epochs.last else { return s }
        for row in r.rows where row.epoch == epoch {
            guard let l = row.located else { continue }
            s += "\(EvaluationOutputs.csvField(row.train)),\(EvaluationOutputs.csvField(row.set)),\(epoch),\(row.sameData ? 1 : 0),\(f(l.accuracyChange)),"
            s += "\(row.random.map { f($0.accuracyChange) } ?? ""),\(row.random.map { f(l.accuracyChange - $0.accuracyChange) } ?? ""),"
            s += "\(f(l.logLikelihoodChange)),\(row.random.map { f($0.logLikelihoodChange) } ?? ""),"
            s += "\(row.random.map { f(l.logLikelihoodChange - $0.logLikelihoodChange) } ?? "")\n"
        }
        return s
    }

    static func markdown(_ r: EnhanceReport) -> String {
        var s = "# Enhance: tuning only the located neurons (Table 2)\n\n"
        s += "Model `\(r.modelPath)` (sha256 \(r.modelSHA256.prefix(12))…); σ = \(RunOutputs.sigmaName(r.sigma)); Adam lr \(r.settings.learningRate), "
        s += "batch \(r.settings.batchSize), shuffle seed \(r.settings.seed); trained slices: each neuron's W_in row (and bias where the model has one)\(r.settings.upAndDown ? ", W_up row and W_out column" : "")"
        s += "; random arm: \(r.randomSeeds) seed\(r.randomSeeds == 1 ? "" : "s") (mean ± sd); "
        s += r.resumed ? "this invocation, which resumed a study begun earlier (their time is not counted): " : ""
        s += "\(r.ranks) rank\(r.ranks == 1 ? "" : "s"), " + String(format: "%.0f s.\n\n", r.seconds)
        for p in r.pairs {
            s += "- **\(p.name)**: \(p.located) located neurons from `\(p.run)`, trained on `\(p.trainConfig)` (\(p.trainSamples) samples)\n"
        }
        s += "\nEach cell: the score after that epoch and its change from the base model (accuracy; answer mean token log-likelihood).\n"
        func cell(_ c: EnhanceChange?, accuracy: Bool) -> String {
            guard let c else { return "–" }
            return accuracy ? "\(f(c.accuracy)) (\(signed(c.accuracyChange)))" : "\(f(c.logLikelihood)) (\(signed(c.logLikelihoodChange)))"
        }
        func cell(_ c: EnhanceRandomChange?, accuracy: Bool) -> String {
            guard let c else { return "–" }
            let d = accuracy ? c.accuracy : c.logLikelihood
            return "\(f(d.mean)) ± \(f(d.sd)) (\(signed(accuracy ? c.accuracyChange : c.logLikelihoodChange)))"
        }
        for p in r.pairs {
            for set in r.sets {
                let rows = r.rows.filter { $0.train == p.name && $0.set == set.name }.sorted { $0.epoch < $1.epoch }
                guard let first = rows.first else { continue }
                s += "\n## Tuned on \(p.name), evaluated on \(set.name) (\(set.task.rawValue), n = \(set.samples))\(first.sameData ? "" : ": another dataset")\n\n"
                s += "Base model: accuracy \(f(first.base.accuracy)), log-likelihood \(f(first.base.logLikelihood)).\n\n"
                for accuracy in [true, false] {
                    s += "| \(accuracy ? "accuracy" : "log-likelihood") | " + rows.map { "epoch \($0.epoch)" }.joined(separator: " | ") + " |\n"
                    s += "|---|" + rows.map { _ in "---:|" }.joined() + "\n"
                    s += "| located | " + rows.map { cell($0.located, accuracy: accuracy) }.joined(separator: " | ") + " |\n"
                    s += "| random | " + rows.map { cell($0.random, accuracy: accuracy) }.joined(separator: " | ") + " |\n"
                    s += "| w/o located | " + rows.map { cell($0.withoutLocated, accuracy: accuracy) }.joined(separator: " | ") + " |\n\n"
                }
            }
        }
        if !r.transfer.isEmpty {
            s += "## Table 5: average change on the sets not trained on\n\n| tuned on | arm | epoch | sets | accuracy change | log-likelihood change |\n|---|---|---:|---|---:|---:|\n"
            for t in r.transfer {
                s += "| \(t.train) | \(t.arm.rawValue) | \(t.epoch) | \(t.sets.joined(separator: ", ")) | \(signed(t.accuracyChange)) | \(signed(t.logLikelihoodChange)) |\n"
            }
        }
        // The matrix compares the located arm with the random one; a study of w/o-located arms only
        // has no cell to show (their transfer is in Table 5 above).
        if r.pairs.count > 1 || r.sets.count > 1, r.rows.contains(where: { $0.located != nil }), let epoch = r.epochs.last {
            for accuracy in [true, false] {
                s += "\n## Cross-dataset matrix (Fig. 5a), epoch \(epoch): located change − mean random change in \(accuracy ? "accuracy" : "log-likelihood")\n\n"
                s += "| tuned on \\ evaluated on | " + r.sets.map(\.name).joined(separator: " | ") + " |\n|---|" + r.sets.map { _ in "---:|" }.joined() + "\n"
                for p in r.pairs {
                    s += "| \(p.name) | " + r.sets.map { set in crossValue(r, train: p.name, set: set.name, accuracy: accuracy).map(signed) ?? "–" }.joined(separator: " | ") + " |\n"
                }
            }
        }
        return s
    }

    /// Per (training set, evaluation set) a row of two panels (accuracy change, log-likelihood
    /// change from the base model); one group of bars per epoch: located, random (mean ± sd,
    /// min–max), w/o located.
    static func bars(_ r: EnhanceReport) -> String {
        let cells = r.pairs.flatMap { p in r.sets.compactMap { set in
            r.rows.contains { $0.train == p.name && $0.set == set.name } ? (p.name, set) : nil } }
        let groupWidth = 3 * 14.0 + 18
        let panelW = max(400, Double(r.epochs.count) * groupWidth + 90), panelH = 240.0
        let (w, h) = (2 * panelW + 30, 70 + Double(cells.count) * (panelH + 30) + 20)
        var s = SVGPlots.header(w, h)
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">Tuning neurons: change from the base model (positive: tuning helped), σ = \(RunOutputs.sigmaName(r.sigma))</text>\n"
        var lx = 20.0
        for (i, name) in ["located", "random (mean ± sd, min–max)", "w/o located"].enumerated() {
            s += "<rect x=\"\(lx)\" y=\"34\" width=\"12\" height=\"12\" fill=\"\(EvaluationPlots.armColors[i])\"/>"
            s += "<text x=\"\(lx + 16)\" y=\"45\" font-size=\"11\">\(SVGPlots.escape(name))</text>"
            lx += 24 + Double(name.count) * 6.2
        }
        s += "\n"
        for (ci, (train, set)) in cells.enumerated() {
            let rows = r.rows.filter { $0.train == train && $0.set == set.name }.sorted { $0.epoch < $1.epoch }
            let y0 = 70 + Double(ci) * (panelH + 30)
            for (pi, accuracy) in [true, false].enumerated() {
                let groups = rows.map { row -> (String, [EvaluationPlots.Bar]) in
                    let base = accuracy ? row.base.accuracy : row.base.logLikelihood
                    var bars = [EvaluationPlots.Bar(value: row.located.map { accuracy ? $0.accuracyChange : $0.logLikelihoodChange } ?? .nan, sd: nil, range: nil)]
                    if let x = row.random {
                        let d = accuracy ? x.accuracy : x.logLikelihood
                        bars.append(.init(value: accuracy ? x.accuracyChange : x.logLikelihoodChange, sd: d.sd, range: (d.min - base)...(d.max - base)))
                    } else {
                        bars.append(.init(value: .nan, sd: nil, range: nil))
                    }
                    bars.append(.init(value: row.withoutLocated.map { accuracy ? $0.accuracyChange : $0.logLikelihoodChange } ?? .nan, sd: nil, range: nil))
                    return ("epoch \(row.epoch)", bars)
                }
                let title = "\(train) → \(set.name) (n = \(set.samples)): " + (accuracy ? "accuracy" : "log-likelihood")
                s += EvaluationPlots.panel(x0: 10 + Double(pi) * (panelW + 10), y0: y0, w: panelW, h: panelH, title: title, groups: groups, groupWidth: groupWidth)
            }
        }
        return s + "</svg>\n"
    }

    static func crossHeatmap(_ r: EnhanceReport) -> String {
        let hasRandom = r.rows.contains { $0.random != nil }
        return EvaluationPlots.crossGrid(
            title: "Cross-dataset enhance (σ = \(RunOutputs.sigmaName(r.sigma)), epoch \(r.epochs.last ?? 0)): located change" + (hasRandom ? " − mean random change" : ""),
            rows: r.pairs.map(\.name), rowLabel: "tuned on", columns: r.sets.map(\.name),
            value: { crossValue(r, train: $0, set: $1, accuracy: $2) },
            note: "red: tuning the located neurons helped that set more than random neurons; blue: less; grey: not evaluated")
    }
}
