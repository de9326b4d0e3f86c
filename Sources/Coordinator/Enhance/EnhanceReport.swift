// enhance.json: every arm's evaluations, the Table 2 rows (change against the base model), the
// cross-dataset cells and Table 5 (the average change on sets that were not trained on).
import Foundation

/// An arm's numbers on one set after one epoch, and their change against the base model.
public struct EnhanceChange: Codable, Sendable {
    public var accuracy: Double
    public var logLikelihood: Double
    public var accuracyChange: Double
    public var logLikelihoodChange: Double
    enum CodingKeys: String, CodingKey {
        case accuracy, logLikelihood = "log_likelihood", accuracyChange = "accuracy_change", logLikelihoodChange = "log_likelihood_change"
    }
}

/// The random arm over its seeds.
public struct EnhanceRandomChange: Codable, Sendable {
    public var draws: Int
    public var accuracy: DrawSummary
    public var logLikelihood: DrawSummary
    public var accuracyChange: Double
    public var logLikelihoodChange: Double
    enum CodingKeys: String, CodingKey {
        case draws, accuracy, logLikelihood = "log_likelihood", accuracyChange = "accuracy_change", logLikelihoodChange = "log_likelihood_change"
    }
}

/// Table 2: tuned on `train`'s data (neurons of its run), evaluated on `set`, after `epoch`.
public struct EnhanceRow: Codable, Sendable {
    public var train: String
    public var set: String
    /// The set's data file is the training set's (a held-out split of it): Table 2 proper;
    /// otherwise a cross-dataset cell.
    public var sameData: Bool
    public var epoch: Int
    public var base: EvaluationStatistics
    public var located: EnhanceChange?
    public var random: EnhanceRandomChange?
    public var withoutLocated: EnhanceChange?
    enum CodingKeys: String, CodingKey { case train, set, sameData = "same_data", epoch, base, located, random, withoutLocated = "without_located" }
}

/// Table 5: an arm's change averaged over the sets whose data the arm was not trained on.
public struct EnhanceTransferRow: Codable, Sendable {
    public var train: String
    public var arm: EnhanceArm
    public var epoch: Int
    public var sets: [String]
    public var accuracyChange: Double
    public var logLikelihoodChange: Double
    enum CodingKeys: String, CodingKey { case train, arm, epoch, sets, accuracyChange = "accuracy_change", logLikelihoodChange = "log_likelihood_change" }
}

public struct EnhanceReport: Codable, Sendable {
    public struct PairInfo: Codable, Sendable {
        public var name: String
        public var run: String
        public var trainConfig: String
        public var trainData: String
        public var trainSamples: Int
        public var located: Int
        enum CodingKeys: String, CodingKey { case name, run, trainConfig = "train_config", trainData = "train_data", trainSamples = "train_samples", located }
    }
    public struct ArmInfo: Codable, Sendable {
        public struct Epoch: Codable, Sendable {
            public var epoch: Int
            public var trainLoss: Double?
            public var sets: [String: EvaluationStatistics]
            public var delta: String
            enum CodingKeys: String, CodingKey { case epoch, trainLoss = "train_loss", sets, delta }
        }
        public var key: String
        public var train: String
        public var arm: EnhanceArm
        public var seed: Int?
        public var trained: Int
        public var erased: Int
        public var epochs: [Epoch]
    }
    public var cnlEnhance = 1
    public var created: String
    public var modelPath: String
    public var modelSHA256: String
    public var sigma: Double
    public var epochs: [Int]
    public var randomSeeds: Int
    public var settings: TrainingSettings
    public var pairs: [PairInfo]
    public var sets: [EraseReport.SetInfo]
    public var base: [String: EvaluationStatistics]
    public var arms: [ArmInfo]
    public var rows: [EnhanceRow]
    public var transfer: [EnhanceTransferRow]
    /// Seconds and ranks of this invocation; `resumed`: it continued a study begun by an earlier
    /// one (whose time is not in `seconds`).
    public var seconds: Double
    public var ranks: Int
    public var resumed: Bool

    enum CodingKeys: String, CodingKey {
        case cnlEnhance = "cnl_enhance", created, modelPath = "model_path", modelSHA256 = "model_sha256", sigma, epochs
        case randomSeeds = "random_seeds", settings, pairs, sets, base, arms, rows, transfer, seconds, ranks, resumed
    }
}

extension EnhanceStudy.Root {
    func makeReport() -> EnhanceReport {
        let req = request
        let pairNames = runs.map(\.name)
        func change(_ st: EvaluationStatistics, _ b: EvaluationStatistics) -> EnhanceChange {
            EnhanceChange(accuracy: st.accuracy, logLikelihood: st.logLikelihood, accuracyChange: st.accuracy - b.accuracy,
                          logLikelihoodChange: st.logLikelihood - b.logLikelihood)
        }
        func stats(_ arm: ArmWork, _ set: String, _ epoch: Int) -> EvaluationStatistics? { results[arm.key]?[epoch]?.sets[set] }
        var rows: [EnhanceRow] = []
        var transfer: [EnhanceTransferRow] = []
        for (p, pair) in pairNames.enumerated() {
            let arms = allArms.filter { $0.pair == p }
            for epoch in req.epochs {
                for set in sets {
                    guard let b = base[set.name] else { continue }
                    let located = arms.first { $0.arm == .located }.flatMap { stats($0, set.name, epoch) }.map { change($0, b) }
                    let without = arms.first { $0.arm == .withoutLocated }.flatMap { stats($0, set.name, epoch) }.map { change($0, b) }
                    let draws = arms.filter { $0.arm == .random }.compactMap { stats($0, set.name, epoch) }
                    var random: EnhanceRandomChange?
                    if !draws.isEmpty {
                        let acc = DrawSummary(draws.map(\.accuracy)), ll = DrawSummary(draws.map(\.logLikelihood))
                        random = EnhanceRandomChange(draws: draws.count, accuracy: acc, logLikelihood: ll, accuracyChange: acc.mean - b.accuracy,
                                                     logLikelihoodChange: ll.mean - b.logLikelihood)
                    }
                    guard located != nil || without != nil || random != nil else { continue }
                    rows.append(EnhanceRow(train: pair, set: set.name, sameData: sameData(p, set), epoch: epoch, base: b,
                                           located: located, random: random, withoutLocated: without))
                }
                // Table 5: the sets of other data files, each arm's change averaged.
                let others = rows.filter { $0.train == pair && $0.epoch == epoch && !$0.sameData }
                guard !others.isEmpty else { continue }
                for arm in EnhanceArm.allCases {
                    let picked: [(Double, Double)] = others.compactMap { r in
                        switch arm {
                        case .located: return r.located.map { ($0.accuracyChange, $0.logLikelihoodChange) }
                        case .random: return r.random.map { ($0.accuracyChange, $0.logLikelihoodChange) }
                        case .withoutLocated: return r.withoutLocated.map { ($0.accuracyChange, $0.logLikelihoodChange) }
                        }
                    }
                    guard picked.count == others.count else { continue }
                    let n = Double(picked.count)
                    transfer.append(EnhanceTransferRow(train: pair, arm: arm, epoch: epoch, sets: others.map(\.set),
                                                       accuracyChange: picked.map(\.0).reduce(0, +) / n,
                                                       logLikelihoodChange: picked.map(\.1).reduce(0, +) / n))
                }
            }
        }
        let armInfos = allArms.map { a in
            EnhanceReport.ArmInfo(key: a.key, train: pairNames[a.pair], arm: a.arm, seed: a.seed, trained: a.trained.count, erased: a.erased.count,
                                  epochs: req.epochs.compactMap { e in
                                      results[a.key]?[e].map { .init(epoch: e, trainLoss: $0.trainLoss, sets: $0.sets,
                                                                    delta: "deltas/\(Self.safe(a.key))-epoch\(e).safetensors") }
                                  })
        }
        return EnhanceReport(created: ISO8601DateFormatter().string(from: Date()), modelPath: modelPath, modelSHA256: modelSHA, sigma: req.sigma,
                             epochs: req.epochs, randomSeeds: req.arms.contains(.random) ? req.randomSeeds : 0, settings: req.settings,
                             pairs: runs.indices.map { p in
                                 .init(name: pairNames[p], run: runs[p].directory, trainConfig: req.trains[p], trainData: trainSets[p].config.dataset.path,
                                       trainSamples: trainSets[p].items.count, located: located[p].count)
                             },
                             sets: sets.map { .init(name: $0.name, config: $0.configPath, data: $0.config.dataset.path, task: $0.task.kind, samples: $0.items.count) },
                             base: base, arms: armInfos, rows: rows, transfer: transfer, seconds: Date().timeIntervalSince(started), ranks: ranks,
                             resumed: resumed)
    }

    func sameData(_ pair: Int, _ set: EvaluationSet) -> Bool {
        (trainSets[pair].config.dataset.path as NSString).standardizingPath == (set.config.dataset.path as NSString).standardizingPath
    }
}
