// `cnl enhance`: the paper's Table 2 (tune only the located neurons, as many random ones, or every
// neuron but the located, which are erased), Fig. 5a's cross-dataset matrix and Table 5, with the
// evaluations after the listed epochs, the tuned slices as delta files, and resumable arms.
import Engine
import Foundation
import Shard

public struct EnhanceRequest: Sendable {
    /// Run directories of finished cnl locate runs, each paired with the training config at the same index.
    public var runs: [String]
    public var trains: [String]
    public var evals: [String]
    public var sigma: Double
    /// Evaluate after these epochs (increasing); training runs to the last.
    public var epochs: [Int]
    public var randomSeeds: Int
    public var arms: [EnhanceArm]
    public var settings: TrainingSettings
    public var output: String
    public var force: Bool
    public var threads: Int?
    /// Write each pair's located arm after the last epoch as an HF directory <saveModel>/<run>.
    public var saveModel: String?

    public init(runs: [String], trains: [String], evals: [String], sigma: Double = 6, epochs: [Int] = [1, 5, 10], randomSeeds: Int = 3,
                arms: [EnhanceArm] = EnhanceArm.allCases, settings: TrainingSettings = .init(), output: String, force: Bool = false, threads: Int? = nil,
                saveModel: String? = nil) {
        (self.runs, self.trains, self.evals, self.sigma, self.epochs, self.randomSeeds) = (runs, trains, evals, sigma, epochs, randomSeeds)
        (self.arms, self.settings, self.output, self.force, self.threads, self.saveModel) = (arms, settings, output, force, threads, saveModel)
    }
}

/// The paper's three arms.
public enum EnhanceArm: String, Codable, Sendable, CaseIterable {
    /// Train the located neurons.
    case located
    /// Train as many neurons drawn uniformly from all L·J (one arm per seed).
    case random
    /// Erase the located neurons and train every other neuron.
    case withoutLocated = "without-located"
}

public enum EnhanceError: Error, LocalizedError, Equatable {
    case emptyTrainable(run: String, sigma: Double)
    case pairing(runs: Int, trains: Int)
    case trainOverlapsEval(train: String, path: String, line: Int, eval: String, evalPath: String, evalLine: Int)
    case learningRate(value: Double)
    case epochs(detail: String)
    case tooFewTrainingSamples(config: String, samples: Int, ranks: Int)

    public var errorDescription: String? {
        switch self {
        case let .emptyTrainable(run, sigma):
            return "run \(run) locates no neuron at σ = \(RunOutputs.sigmaName(sigma)): nothing to train; lower --sigma"
        case let .pairing(runs, trains):
            return "\(runs) run director\(runs == 1 ? "y" : "ies") but \(trains) --train config\(trains == 1 ? "" : "s"); give one --train per run, in the same order"
        case let .trainOverlapsEval(train, path, line, eval, evalPath, evalLine):
            return "\(train): training record \(path):\(line) is evaluation record \(evalPath):\(evalLine) of \(eval); train and evaluate on disjoint records (set 'dataset.offset'/'dataset.limit')"
        case let .learningRate(value):
            return "--lr must be a positive finite number, got \(value)"
        case let .epochs(detail):
            return "--epochs: \(detail)"
        case let .tooFewTrainingSamples(config, samples, ranks):
            return "\(config): \(samples) training samples for \(ranks) ranks; use at most \(samples) ranks or more training records"
        }
    }
}

/// One arm trained: on pair `pair`'s training set, the `trained` neurons, with `erased` zeroed first.
struct ArmWork: Codable, Equatable {
    var key: String
    var pair: Int
    var arm: EnhanceArm
    var seed: Int?
    var trained: [Int]
    var erased: [Int]
    /// Epochs already evaluated by an earlier invocation (their results are on file).
    var evaluated: [Int]
    var identity: String
}

/// What every rank needs (broadcast by the root after planning).
struct EnhanceWork: Codable {
    var modelPath: String
    var trainSets: [[TrainingItem]]
    var sets: [EvaluationWork.SetWork]
    var evaluateBase: Bool
    var arms: [ArmWork]
    var epochs: [Int]
    var settings: TrainingSettings
}

/// A finished evaluation of an arm after an epoch, kept in <output>/jobs/<arm>/epoch-<e>.json.
struct ArmEpochRecord: Codable {
    var identity: String
    var arm: String
    var epoch: Int
    var trainLoss: Double?
    var sets: [String: EvaluationStatistics]
    var seconds: Double
}

public enum EnhanceStudy {
    final class Root {
        let request: EnhanceRequest
        var runs: [LocatedRun] = []
        var trainSets: [EvaluationSet] = []
        var sets: [EvaluationSet] = []
        var modelPath = "", modelSHA = "", modelType = ""
        var base: [String: EvaluationStatistics] = [:]
        var baseIdentity = ""
        var located: [[Int]] = []
        /// Every arm of the study (done or not) and its results by epoch.
        var allArms: [ArmWork] = []
        var results: [String: [Int: ArmEpochRecord]] = [:]
        let started = Date()
        var ranks = 1
        var report: EnhanceReport?
        /// The output directory's lock, held from before planning until the tables are written.
        var lock: RunDirectoryLock?
        /// An earlier invocation of the same study left its base evaluation (at least) on file.
        var resumed = false
        init(_ r: EnhanceRequest) { request = r }
    }

    /// Runs on every rank; the report on the root, nil elsewhere.
    public static func execute(_ request: EnhanceRequest, log: @escaping (String) -> Void) throws -> EnhanceReport? {
        CheckpointKeeper.catchStopSignals()
        let mpi = try MPIContext()
        defer { mpi.finalize() }
        BLASThreads.set(LocalizationRun.blasThreads(requested: request.threads, mpi: mpi))
        let root = Root(request)
        root.ranks = mpi.size
        // One study per output directory: a second job into it (a double submission) is refused
        // before it reads or writes anything there. Released on every way out.
        defer { root.lock?.release() }

        var planned: (work: EnhanceWork, model: TransformerModel, tokenizer: Tokenizer)?
        let work = try RootDecision.broadcast(mpi, log: log) {
            root.lock = try OutputDirectoryLock.acquire(request.output, command: "cnl enhance", log: log)
            let p = try plan(root, log: log)
            try EvaluationExecutor.checkSizes(p.work.sets, ranks: mpi.size)
            if let i = p.work.trainSets.firstIndex(where: { $0.count < mpi.size }) {
                throw EnhanceError.tooFewTrainingSamples(config: request.trains[i], samples: p.work.trainSets[i].count, ranks: mpi.size)
            }
            planned = p
            return p.work
        }

        do {
            let model: TransformerModel, tokenizer: Tokenizer
            if let planned { (model, tokenizer) = (planned.model, planned.tokenizer) } else {
                let loaded = try ModelRegistry.load(path: work.modelPath)
                (model, tokenizer) = (loaded.model, try loaded.requireTokenizer())
            }
            let evaluator = ItemEvaluator(model: model, tokenizer: tokenizer)
            let shares = work.sets.map { EvaluationExecutor.assign($0, ranks: mpi.size)[mpi.rank] }
            func evaluateAll(_ label: String) throws -> [String: EvaluationStatistics] {
                var out: [String: EvaluationStatistics] = [:]
                for (s, set) in work.sets.enumerated() {
                    if let r = try EvaluationExecutor.evaluateSet(set, share: shares[s], condition: .init(key: label, neurons: []),
                                                                  evaluator: evaluator, mpi: mpi) {
                        out[set.name] = r.statistics
                    }
                }
                return out
            }
            if work.evaluateBase {
                let b = try evaluateAll("base")
                if mpi.rank == 0 { try root.recordBase(b, log: log) }
            }
            for (a, arm) in work.arms.enumerated() {
                let erasure = try model.erase(arm.erased)
                let slices = NeuronSlices(neurons: arm.trained, upAndDown: work.settings.upAndDown)
                let trainer = SliceTrainer(model: model, slices: slices, settings: work.settings, items: work.trainSets[arm.pair], mpi: mpi)
                let saved = trainer.parameters.values()
                let statePath = root.statePath(arm.key)
                let at = try trainer.shareResumed(trainer.readState(identity: arm.identity, from: statePath))
                if mpi.rank == 0 {
                    log("[\(a + 1)/\(work.arms.count)] \(arm.key): \(arm.trained.count) neurons trained"
                        + (arm.erased.isEmpty ? "" : ", \(arm.erased.count) erased") + ", \(trainer.parameters.count) parameters"
                        + (at.epoch == 0 ? "" : at.batches == 0 ? "; resuming after epoch \(at.epoch)"
                                                                : "; resuming in epoch \(at.epoch) after batch \(at.batches)"))
                }
                // The state after each epoch is written once its evaluation (if listed) is on file,
                // and on a stop signal at the next batch boundary: a stop loses at most a batch.
                for epoch in stride(from: max(at.epoch, 1), through: work.epochs.last ?? 0, by: 1) {
                    let started = Date()
                    let trained = epoch == at.epoch && at.batches == 0   // complete in the state, its evaluation pending
                    if epoch == at.epoch && trained && arm.evaluated.contains(epoch) { continue }
                    let first = epoch == at.epoch ? at.batches : 0
                    var lossSum = epoch == at.epoch ? at.lossSum : 0
                    if !trained {
                        lossSum = try trainer.runEpoch(epoch, from: first, lossSum: lossSum, label: arm.key, log: log, onStop: { b, sum in
                            try trainer.writeState(epoch: epoch, batches: b, lossSum: sum, identity: arm.identity, to: statePath)
                        }) ?? 0
                        if CheckpointKeeper.stopRequested {   // at the epoch's last batch: keep it whole, evaluate after the resume
                            if mpi.rank == 0 { try trainer.writeState(epoch: epoch, lossSum: lossSum, identity: arm.identity, to: statePath) }
                            throw SliceTrainer.Stopped()
                        }
                    }
                    if work.epochs.contains(epoch), !arm.evaluated.contains(epoch) {
                        let stats = try evaluateAll(arm.key)
                        if mpi.rank == 0 {
                            try root.recordEpoch(arm, epoch: epoch, loss: lossSum / Double(max(trainer.batchesPerEpoch, 1)), stats: stats,
                                                 seconds: Date().timeIntervalSince(started), model: model,
                                                 slices: NeuronSlices(neurons: arm.trained + arm.erased, upAndDown: work.settings.upAndDown), log: log)
                        }
                    }
                    if mpi.rank == 0 { try trainer.writeState(epoch: epoch, lossSum: lossSum, identity: arm.identity, to: statePath) }
                }
                trainer.parameters.assign(saved)
                model.restore(erasure)
            }
        } catch is SliceTrainer.Stopped {
            if mpi.rank == 0 {
                log("cnl: stop signal; the arm's state is checkpointed in \(request.output)/jobs; exiting with status \(CheckpointKeeper.requeueStatus) (run the same command to resume)")
            }
            root.lock?.release()
            mpi.finalize()
            exit(CheckpointKeeper.requeueStatus)
        } catch {
            FileHandle.standardError.write(Data("cnl: error: rank \(mpi.rank): \(error.localizedDescription)\n".utf8))
            // The abort kills the root too: its lock goes first, so a resubmission finds none.
            root.lock?.release()
            mpi.abort(code: 1)
        }

        _ = try RootDecision.broadcast(mpi, log: log) {
            let r = root.makeReport()
            try EnhanceOutputs.write(r, to: request.output)
            root.report = r
            return true
        }
        return root.report
    }

    /// Loads and checks runs, training and evaluation sets (one model; evaluation records held out
    /// from the training records and the runs' localization records), lists the arms and what an
    /// earlier invocation already finished.
    static func plan(_ root: Root, log: (String) -> Void) throws -> (work: EnhanceWork, model: TransformerModel, tokenizer: Tokenizer) {
        let request = root.request
        guard !request.runs.isEmpty, !request.evals.isEmpty else { throw OfflineError.badOption("give at least one run directory and one --eval config") }
        guard request.runs.count == request.trains.count else { throw EnhanceError.pairing(runs: request.runs.count, trains: request.trains.count) }
        guard request.settings.learningRate > 0, request.settings.learningRate.isFinite else { throw EnhanceError.learningRate(value: request.settings.learningRate) }
        try checkEpochs(request.epochs)
        guard request.sigma > 0, request.sigma.isFinite else { throw EvaluationError.sigma(value: request.sigma) }
        let inputs = try StudyInputs.load(runs: request.runs, evals: request.evals, trains: request.trains)
        let (runs, trainSets, sets) = (inputs.runs, inputs.trainSets, inputs.evalSets)
        let (modelPath, modelSHA, d) = (inputs.modelPath, inputs.modelSHA256, inputs.model.dimensions)
        if request.saveModel != nil { _ = try ModelRegistry.hfConfigJSON(path: modelPath) }   // a checkpoint that cannot be saved fails now
        for train in trainSets {
            for set in sets {
                var lineOf: [String: Int] = [:]
                for item in train.items where lineOf[item.record] == nil { lineOf[item.record] = item.line }
                if let shared = set.items.first(where: { lineOf[$0.record] != nil }) {
                    throw EnhanceError.trainOverlapsEval(train: train.configPath, path: train.config.dataset.path, line: lineOf[shared.record]!,
                                                         eval: set.configPath, evalPath: set.config.dataset.path, evalLine: shared.line)
                }
            }
        }
        let located = try runs.map { run -> [Int] in
            let m = try run.mask(sigma: request.sigma)
            guard m.count > 0 else { throw EnhanceError.emptyTrainable(run: run.directory, sigma: request.sigma) }
            return m.located
        }
        try AtomicFile.prepareDirectory(request.output)
        if request.force {
            for sub in ["jobs", "deltas"] { try? FileManager.default.removeItem(atPath: (request.output as NSString).appendingPathComponent(sub)) }
        }

        // The arms, pair by pair, each with an identity: a rerun reuses what matches it.
        let canonical = JSONEncoder()
        canonical.outputFormatting = [.sortedKeys]
        var setHash = SHA256()
        for s in sets { setHash.update(try canonical.encode(s.items)); setHash.update(try canonical.encode(s.task)) }
        let evalIdentity = setHash.finalize().map { String(format: "%02x", $0) }.joined()
        let allNeurons = Array(0..<d.neuronCount)
        var arms: [ArmWork] = []
        for (p, run) in runs.enumerated() {
            var h = SHA256()
            h.update(try canonical.encode(trainSets[p].items.map { TrainingItem(prompt: $0.prompt, answer: $0.gold) }))
            h.update(try canonical.encode(request.settings))
            let trainIdentity = h.finalize().map { String(format: "%02x", $0) }.joined()
            func add(_ arm: EnhanceArm, seed: Int?, trained: [Int], erased: [Int]) {
                let key = "\(run.name):" + (seed.map { "\(arm.rawValue)-seed\($0)" } ?? arm.rawValue)
                var n = SHA256()
                n.update(trained.map(String.init).joined(separator: ",") + "|" + erased.map(String.init).joined(separator: ","))
                let identity = "\(modelSHA)|\(trainIdentity)|\(evalIdentity)|" + n.finalize().map { String(format: "%02x", $0) }.joined()
                arms.append(ArmWork(key: key, pair: p, arm: arm, seed: seed, trained: trained, erased: erased, evaluated: [], identity: identity))
            }
            for arm in request.arms {
                switch arm {
                case .located: add(.located, seed: nil, trained: located[p], erased: [])
                case .random:
                    for seed in 0..<request.randomSeeds {
                        add(.random, seed: seed, trained: RandomNeurons.draw(.uniform, like: located[p], layers: d.layers, ffnWidth: d.ffnWidth, seed: UInt64(seed)), erased: [])
                    }
                case .withoutLocated:
                    let off = Set(located[p])
                    add(.withoutLocated, seed: nil, trained: allNeurons.filter { !off.contains($0) }, erased: located[p])
                }
            }
        }
        // What earlier invocations finished: the base evaluation and each arm's evaluated epochs.
        if let data = FileManager.default.contents(atPath: root.basePath), let b = try? JSONDecoder().decode(BaseRecord.self, from: data),
           b.identity == "\(modelSHA)|\(evalIdentity)" {
            root.base = b.sets
            root.resumed = true
        }
        var pending: [ArmWork] = []
        for var arm in arms {
            for e in request.epochs {
                if let data = FileManager.default.contents(atPath: root.epochPath(arm.key, e)),
                   let r = try? JSONDecoder().decode(ArmEpochRecord.self, from: data), r.identity == arm.identity {
                    root.results[arm.key, default: [:]][e] = r
                    arm.evaluated.append(e)
                }
            }
            if arm.evaluated.count < request.epochs.count { pending.append(arm) }
        }
        (root.runs, root.trainSets, root.sets, root.modelPath, root.modelSHA) = (runs, trainSets, sets, modelPath, modelSHA)
        (root.modelType, root.located, root.allArms) = (inputs.model.modelType, located, arms)
        root.baseIdentity = "\(modelSHA)|\(evalIdentity)"
        log("cnl enhance: \(runs.count) training set\(runs.count == 1 ? "" : "s") (\(trainSets.map { "\($0.name): \($0.items.count)" }.joined(separator: ", ")) samples) × "
            + "\(sets.count) evaluation set\(sets.count == 1 ? "" : "s") (\(sets.map { "\($0.name): \($0.items.count)" }.joined(separator: ", ")) samples), "
            + "σ = \(RunOutputs.sigmaName(request.sigma)) (\(located.map(\.count).map(String.init).joined(separator: ", ")) located), epochs \(request.epochs.map(String.init).joined(separator: ",")): "
            + "\(arms.count) arms, \(arms.count - pending.count) done by an earlier invocation, \(pending.count) to go")
        let work = EnhanceWork(modelPath: modelPath, trainSets: trainSets.map { $0.items.map { TrainingItem(prompt: $0.prompt, answer: $0.gold) } },
                               sets: sets.map { .init(name: $0.name, task: $0.task, items: $0.items) }, evaluateBase: root.base.count < sets.count,
                               arms: pending, epochs: request.epochs, settings: request.settings)
        return (work, inputs.model, inputs.tokenizer)
    }

    /// Epoch lists must be positive and strictly increasing.
    public static func checkEpochs(_ epochs: [Int]) throws {
        guard !epochs.isEmpty else { throw EnhanceError.epochs(detail: "give at least one epoch") }
        guard epochs.allSatisfy({ $0 >= 1 && $0 <= 10_000 }) else {
            throw EnhanceError.epochs(detail: "every epoch must be between 1 and 10000, got \(epochs.map(String.init).joined(separator: ","))")
        }
        guard zip(epochs, epochs.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw EnhanceError.epochs(detail: "the list must be strictly increasing, got \(epochs.map(String.init).joined(separator: ","))")
        }
    }
}

/// The base model's evaluation, kept in <output>/jobs/base.json.
struct BaseRecord: Codable {
    var identity: String
    var sets: [String: EvaluationStatistics]
}

extension EnhanceStudy.Root {
    func path(_ p: String) -> String { (request.output as NSString).appendingPathComponent(p) }
    static func safe(_ key: String) -> String {
        String(key.map { ($0.isLetter || $0.isNumber) && $0.isASCII || $0 == "-" || $0 == "." ? $0 : "_" })
    }
    var basePath: String { path("jobs/base.json") }
    func statePath(_ arm: String) -> String { path("jobs/\(Self.safe(arm))/state.safetensors") }
    func epochPath(_ arm: String, _ epoch: Int) -> String { path("jobs/\(Self.safe(arm))/epoch-\(epoch).json") }
    func deltaPath(_ arm: String, _ epoch: Int) -> String { path("deltas/\(Self.safe(arm))-epoch\(epoch).safetensors") }

    func recordBase(_ stats: [String: EvaluationStatistics], log: (String) -> Void) throws {
        base = stats
        try FileManager.default.createDirectory(atPath: path("jobs"), withIntermediateDirectories: true)
        try AtomicFile.write(try JSONEncoder().encode(BaseRecord(identity: baseIdentity, sets: stats)), to: basePath)
        for s in sets { if let b = stats[s.name] { log(String(format: "base on %@: accuracy %.4f, log-likelihood %.4f", s.name, b.accuracy, b.logLikelihood)) } }
    }

    func recordEpoch(_ arm: ArmWork, epoch: Int, loss: Double?, stats: [String: EvaluationStatistics], seconds: Double,
                     model: TransformerModel, slices: NeuronSlices, log: (String) -> Void) throws {
        let record = ArmEpochRecord(identity: arm.identity, arm: arm.key, epoch: epoch, trainLoss: loss, sets: stats, seconds: seconds)
        let file = epochPath(arm.key, epoch)
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // The delta first: an epoch counts as done only once both are on disk.
        try FileManager.default.createDirectory(atPath: path("deltas"), withIntermediateDirectories: true)
        let delta = NeuronDelta(model: model, slices: slices, baseSHA256: modelSHA, basePath: modelPath,
                                notes: ["arm": arm.arm.rawValue, "key": arm.key, "epoch": String(epoch), "sigma": RunOutputs.sigmaName(request.sigma),
                                        "run": runs[arm.pair].directory, "train": request.trains[arm.pair],
                                        "trained": String(arm.trained.count), "erased": String(arm.erased.count)])
        try delta.write(to: deltaPath(arm.key, epoch), modelType: modelType)
        if let dir = request.saveModel, arm.arm == .located, epoch == request.epochs.last {
            let target = (dir as NSString).appendingPathComponent(runs[arm.pair].name)
            try HFModelWriter.write(model, sourcePath: modelPath, to: target,
                                    metadata: ["base_sha256": modelSHA, "arm": arm.key, "epoch": String(epoch)])
            log("wrote \(arm.key) after epoch \(epoch) to \(target)/{config.json, model.safetensors}")
        }
        try AtomicFile.write(try JSONEncoder().encode(record), to: file)
        results[arm.key, default: [:]][epoch] = record
        let parts = sets.compactMap { s in stats[s.name].map { st in
            String(format: "%@ %.4f (%+.4f), ll %.4f", s.name, st.accuracy, st.accuracy - (base[s.name]?.accuracy ?? .nan), st.logLikelihood)
        } }
        log("\(arm.key) epoch \(epoch)" + (loss.map { String(format: " (train loss %.4f)", $0) } ?? "") + ": " + parts.joined(separator: "; ")
            + String(format: " (%.1f s)", seconds))
    }
}
