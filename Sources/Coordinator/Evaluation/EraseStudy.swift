// `cnl erase`: the paper's Table 3 (erase located vs random neurons), Table 4's IPP and Fig. 5's
// cross-dataset matrix, for every run × evaluation set, with per-job results kept for resuming.
import Engine
import Foundation
import Shard

public struct EraseRequest: Sendable {
    public var runs: [String]
    public var evals: [String]
    public var sigmas: [Double]
    /// K: random draws per baseline, seeds 0..<K.
    public var randomSeeds: Int
    public var baselines: [RandomBaseline]
    public var output: String
    /// Pairs whose run localized on another data file than the set's are evaluated only at this
    /// σ (the cross matrix's); nil: at every σ.
    public var crossSigma: Double?
    /// Evaluate each run only on the sets of its own data file (Table 3 without the cross matrix).
    public var ownPairsOnly: Bool
    /// Discard the per-job results of an earlier study in `output`.
    public var force: Bool
    public var threads: Int?

    public init(runs: [String], evals: [String], sigmas: [Double], randomSeeds: Int, baselines: [RandomBaseline], output: String,
                crossSigma: Double? = nil, ownPairsOnly: Bool = false, force: Bool = false, threads: Int? = nil) {
        self.runs = runs; self.evals = evals; self.sigmas = sigmas; self.randomSeeds = randomSeeds; self.baselines = baselines
        self.output = output; self.crossSigma = crossSigma; self.ownPairsOnly = ownPairsOnly; self.force = force; self.threads = threads
    }
}

/// Mean, sample standard deviation, min and max of one number over the random draws.
public struct DrawSummary: Codable, Sendable, Equatable {
    public var mean: Double
    public var sd: Double
    public var min: Double
    public var max: Double

    public init(_ v: [Double]) {
        var s = 0.0
        for x in v { s += x }
        mean = v.isEmpty ? .nan : s / Double(v.count)
        var q = 0.0
        for x in v { q += (x - mean) * (x - mean) }
        sd = v.count > 1 ? (q / Double(v.count - 1)).squareRoot() : 0
        min = v.min() ?? .nan
        max = v.max() ?? .nan
    }
}

/// One row of Table 3: neurons located by `run` at σ, erased, evaluated on `set`.
public struct EraseRow: Codable, Sendable {
    public struct Baseline: Codable, Sendable {
        public var baseline: RandomBaseline
        public var draws: Int
        public var accuracy: DrawSummary
        public var logLikelihood: DrawSummary
        /// base − mean of the draws (positive: erasing random neurons hurt).
        public var accuracyDrop: Double
        public var logLikelihoodDrop: Double
        /// Table 4's IPP: the located drop minus the largest drop of any draw (positive: the
        /// located neurons hurt more than every random draw).
        public var ippAccuracy: Double
        public var ippLogLikelihood: Double
        enum CodingKeys: String, CodingKey {
            case baseline, draws, accuracy, logLikelihood = "log_likelihood", accuracyDrop = "accuracy_drop"
            case logLikelihoodDrop = "log_likelihood_drop", ippAccuracy = "ipp_accuracy", ippLogLikelihood = "ipp_log_likelihood"
        }
    }
    public var run: String
    public var set: String
    public var sigma: Double
    public var neurons: Int
    public var base: EvaluationStatistics
    public var located: EvaluationStatistics
    public var locatedAccuracyDrop: Double
    public var locatedLogLikelihoodDrop: Double
    public var baselines: [Baseline]

    enum CodingKeys: String, CodingKey {
        case run, set, sigma, neurons, base, located, locatedAccuracyDrop = "located_accuracy_drop"
        case locatedLogLikelihoodDrop = "located_log_likelihood_drop", baselines
    }
}

/// erase.json.
public struct EraseReport: Codable, Sendable {
    public struct SetInfo: Codable, Sendable { public var name: String; public var config: String; public var data: String; public var task: EvaluationTaskKind; public var samples: Int }
    public struct RunInfo: Codable, Sendable { public var name: String; public var directory: String; public var data: String; public var samples: Int }
    public var cnlErase = 1
    public var created: String
    public var modelPath: String
    public var modelSHA256: String
    public var runs: [RunInfo]
    public var sets: [SetInfo]
    public var sigmas: [Double]
    public var randomSeeds: Int
    public var baselines: [RandomBaseline]
    public var crossSigma: Double?
    public var rows: [EraseRow]
    public var seconds: Double
    public var ranks: Int

    enum CodingKeys: String, CodingKey {
        case cnlErase = "cnl_erase", created, modelPath = "model_path", modelSHA256 = "model_sha256", runs, sets, sigmas
        case randomSeeds = "random_seeds", baselines, crossSigma = "cross_sigma", rows, seconds, ranks
    }
}

/// A finished job as kept in <output>/jobs/<set>/<condition>.json: a rerun of the same study
/// reuses it when its identity (model, samples, task, neurons) is unchanged.
struct JobRecord: Codable {
    var identity: String
    var set: String
    var condition: String
    var neurons: Int
    var statistics: EvaluationStatistics
    var seconds: Double
    var outcomes: [ItemOutcome]
}

public enum EraseStudy {
    final class Root: EvaluationDriver {
        var request: EraseRequest
        var runs: [LocatedRun] = []
        var sets: [EvaluationSet] = []
        var modelPath = ""
        var modelSHA = ""
        var layers = 0, ffnWidth = 0
        var conditions: [EvaluationCondition] = []
        var identities: [String: String] = [:]              // "set|condition" → identity
        var results: [String: EvaluationStatistics] = [:]   // "set|condition" → statistics
        var pending: [EvaluationWork.Job] = []
        var started = Date()
        var ranks = 1
        var report: EraseReport?
        var lock: RunDirectoryLock?
        init(_ r: EraseRequest) { request = r }

        func plan(log: (String) -> Void) throws -> (work: EvaluationWork, model: TransformerModel, tokenizer: Tokenizer) {
            try EraseStudy.plan(self, log: log)
        }

        func record(_ j: Int, _ result: JobResult, log: (String) -> Void) throws {
            let job = pending[j]
            let set = sets[job.set], condition = conditions[job.condition]
            let key = "\(set.name)|\(condition.key)"
            let record = JobRecord(identity: identities[key]!, set: set.name, condition: condition.key, neurons: condition.neurons.count,
                                   statistics: result.statistics, seconds: result.seconds, outcomes: result.outcomes)
            let file = jobFile(request.output, set: set.name, condition: condition.key)
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(try JSONEncoder().encode(record), to: file)
            results[key] = result.statistics
            ranks = result.ranks
            log(String(format: "[%d/%d] %@ ← %@ (%d neurons): accuracy %.4f, log-likelihood %.4f (%.1f s)", j + 1, pending.count,
                       set.name, condition.key, condition.neurons.count, result.statistics.accuracy, result.statistics.logLikelihood, result.seconds))
        }

        func finish() throws {
            let r = makeReport(self)
            try EraseOutputs.write(r, to: request.output)
            report = r
        }
    }

    /// Runs on every rank; the report on the root, nil elsewhere.
    public static func execute(_ request: EraseRequest, log: @escaping (String) -> Void) throws -> EraseReport? {
        let root = Root(request)
        try EvaluationExecutor.execute(root, threads: request.threads, log: log)
        return root.report
    }

    /// Loads the sets and runs, checks them against each other (one model, held-out records),
    /// lists the conditions and the jobs not already done by an earlier invocation.
    static func plan(_ root: Root, log: (String) -> Void) throws -> (work: EvaluationWork, model: TransformerModel, tokenizer: Tokenizer) {
        let request = root.request
        for s in request.sigmas + [request.crossSigma].compactMap({ $0 }) where !(s > 0 && s.isFinite) { throw EvaluationError.sigma(value: s) }
        // One study per output directory: a second job into it (a double submission) is refused
        // before it reads the finished jobs there or writes anything.
        root.lock = try OutputDirectoryLock.acquire(request.output, command: "cnl erase", log: log)
        let inputs = try StudyInputs.load(runs: request.runs, evals: request.evals)
        let (runs, sets, modelPath, modelSHA) = (inputs.runs, inputs.evalSets, inputs.modelPath, inputs.modelSHA256)
        let d = inputs.model.dimensions
        try AtomicFile.prepareDirectory(request.output)
        if request.force { try? FileManager.default.removeItem(atPath: (request.output as NSString).appendingPathComponent("jobs")) }

        // Conditions, each once (a uniform draw depends on its count and seed only, so runs whose
        // masks have the same size share it), and per set the conditions it is evaluated under.
        var conditions: [EvaluationCondition] = [EvaluationCondition(key: "base", neurons: [])]
        var index: [String: Int] = ["base": 0]
        var perSet = [[Int]](repeating: [0], count: sets.count)
        func add(_ c: EvaluationCondition, sets targets: [Int]) {
            let k = index[c.key] ?? { conditions.append(c); index[c.key] = conditions.count - 1; return conditions.count - 1 }()
            for s in targets where !perSet[s].contains(k) { perSet[s].append(k) }
        }
        for run in runs {
            for sigma in request.sigmas {
                let targets = sets.indices.filter { s in
                    if sameData(run, sets[s]) { return true }
                    if request.ownPairsOnly { return false }
                    return request.crossSigma.map { sigma == $0 } ?? true
                }
                guard !targets.isEmpty else { continue }
                let mask = try run.mask(sigma: sigma)
                add(EvaluationCondition(key: locatedKey(run: run.name, sigma: sigma), neurons: mask.located), sets: targets)
                for b in request.baselines {
                    for seed in 0..<request.randomSeeds {
                        let neurons = RandomNeurons.draw(b, like: mask.located, layers: d.layers, ffnWidth: d.ffnWidth, seed: UInt64(seed))
                        add(EvaluationCondition(key: randomKey(b, run: run.name, sigma: sigma, count: mask.count, seed: seed), neurons: neurons), sets: targets)
                    }
                }
            }
        }
        // Jobs condition by condition (each erased once for all its sets), minus those done.
        var pending: [EvaluationWork.Job] = []
        // Sorted keys: Foundation's encoder otherwise orders keys differently from run to run.
        let canonical = JSONEncoder()
        canonical.outputFormatting = [.sortedKeys]
        let setHashes = try sets.map { s -> String in
            var h = SHA256()
            h.update(try canonical.encode(s.items))
            h.update(try canonical.encode(s.task))
            return h.finalize().map { String(format: "%02x", $0) }.joined()
        }
        var reused = 0
        for (c, condition) in conditions.enumerated() {
            var h = SHA256()
            h.update(condition.neurons.map(String.init).joined(separator: ","))
            let neuronHash = h.finalize().map { String(format: "%02x", $0) }.joined()
            for s in sets.indices where perSet[s].contains(c) {
                let key = "\(sets[s].name)|\(condition.key)"
                let identity = "\(modelSHA)|\(setHashes[s])|\(neuronHash)"
                root.identities[key] = identity
                let file = jobFile(request.output, set: sets[s].name, condition: condition.key)
                if let data = FileManager.default.contents(atPath: file), let r = try? JSONDecoder().decode(JobRecord.self, from: data), r.identity == identity {
                    root.results[key] = r.statistics
                    reused += 1
                } else {
                    pending.append(.init(set: s, condition: c))
                }
            }
        }
        (root.runs, root.sets, root.modelPath, root.modelSHA) = (runs, sets, modelPath, modelSHA)
        (root.layers, root.ffnWidth, root.conditions, root.pending) = (d.layers, d.ffnWidth, conditions, pending)
        log("cnl erase: \(runs.count) run\(runs.count == 1 ? "" : "s") × \(sets.count) evaluation set\(sets.count == 1 ? "" : "s") "
            + "(\(sets.map { "\($0.name): \($0.items.count)" }.joined(separator: ", ")) samples), σ = \(request.sigmas.map(RunOutputs.sigmaName).joined(separator: ", ")), "
            + "K = \(request.randomSeeds) (\(request.baselines.map(\.rawValue).joined(separator: ", "))): \(pending.count + reused) evaluations, "
            + "\(reused) done by an earlier invocation, \(pending.count) to go")
        let work = EvaluationWork(modelPath: modelPath, sets: sets.map { .init(name: $0.name, task: $0.task, items: $0.items) },
                                  conditions: conditions, jobs: pending)
        return (work, inputs.model, inputs.tokenizer)
    }

    static func makeReport(_ root: Root) -> EraseReport {
        let req = root.request
        var rows: [EraseRow] = []
        for set in root.sets {
            guard let base = root.results["\(set.name)|base"] else { continue }
            for run in root.runs {
                for sigma in req.sigmas {
                    let lk = "\(set.name)|\(locatedKey(run: run.name, sigma: sigma))"
                    guard let located = root.results[lk], let cond = root.conditions.first(where: { "\(set.name)|\($0.key)" == lk }) else { continue }
                    var baselines: [EraseRow.Baseline] = []
                    for b in req.baselines {
                        let draws = (0..<req.randomSeeds).compactMap {
                            root.results["\(set.name)|\(randomKey(b, run: run.name, sigma: sigma, count: cond.neurons.count, seed: $0))"]
                        }
                        guard !draws.isEmpty else { continue }
                        let acc = DrawSummary(draws.map(\.accuracy)), ll = DrawSummary(draws.map(\.logLikelihood))
                        let locatedDrop = (base.accuracy - located.accuracy, base.logLikelihood - located.logLikelihood)
                        baselines.append(.init(baseline: b, draws: draws.count, accuracy: acc, logLikelihood: ll,
                                               accuracyDrop: base.accuracy - acc.mean, logLikelihoodDrop: base.logLikelihood - ll.mean,
                                               ippAccuracy: locatedDrop.0 - (base.accuracy - acc.min),
                                               ippLogLikelihood: locatedDrop.1 - (base.logLikelihood - ll.min)))
                    }
                    rows.append(EraseRow(run: run.name, set: set.name, sigma: sigma, neurons: cond.neurons.count, base: base, located: located,
                                         locatedAccuracyDrop: base.accuracy - located.accuracy,
                                         locatedLogLikelihoodDrop: base.logLikelihood - located.logLikelihood, baselines: baselines))
                }
            }
        }
        return EraseReport(created: ISO8601DateFormatter().string(from: Date()), modelPath: root.modelPath, modelSHA256: root.modelSHA,
                           runs: root.runs.map { .init(name: $0.name, directory: $0.directory, data: $0.report.config.dataset.path, samples: $0.report.data.samples) },
                           sets: root.sets.map { .init(name: $0.name, config: $0.configPath, data: $0.config.dataset.path, task: $0.task.kind, samples: $0.items.count) },
                           sigmas: req.sigmas, randomSeeds: req.randomSeeds, baselines: req.baselines, crossSigma: req.crossSigma, rows: rows,
                           seconds: Date().timeIntervalSince(root.started), ranks: root.ranks)
    }

    static func sameData(_ run: LocatedRun, _ set: EvaluationSet) -> Bool {
        (run.report.config.dataset.path as NSString).standardizingPath == (set.config.dataset.path as NSString).standardizingPath
    }

    static func locatedKey(run: String, sigma: Double) -> String { "located:\(run):σ\(RunOutputs.sigmaName(sigma))" }

    static func randomKey(_ b: RandomBaseline, run: String, sigma: Double, count: Int, seed: Int) -> String {
        switch b {
        case .uniform: return "uniform:n\(count):seed\(seed)"
        case .layerMatched: return "layer-matched:\(run):σ\(RunOutputs.sigmaName(sigma)):seed\(seed)"
        }
    }

    static func jobFile(_ output: String, set: String, condition: String) -> String {
        let safe = String(condition.replacingOccurrences(of: "σ", with: "s").map { ($0.isLetter || $0.isNumber) && $0.isASCII || $0 == "-" || $0 == "." ? $0 : "_" })
        return ((output as NSString).appendingPathComponent("jobs/\(set)") as NSString).appendingPathComponent("\(safe).json")
    }

}

extension EvaluationSet {
    static func nameOf(_ configPath: String) -> String { ((configPath as NSString).lastPathComponent as NSString).deletingPathExtension }
}
