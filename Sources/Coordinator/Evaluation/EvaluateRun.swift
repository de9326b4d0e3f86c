// One `cnl evaluate`: a model's accuracy and answer log-likelihood on a dataset config, optionally with neurons erased.
import Engine
import Foundation
import Shard

public struct EvaluateRequest: Sendable {
    public var configPath: String
    /// Erase this run's located neurons at `sigma` …
    public var eraseRun: String?
    public var sigma: Double
    /// … or this many uniformly drawn neurons with `seed`.
    public var eraseRandom: Int?
    public var seed: UInt64
    /// Output directory (nil: the config's `output`).
    public var output: String?
    public var threads: Int?
    /// A `cnl enhance` delta file applied to the model before evaluating (and before any erase).
    public var delta: String?
    /// Write the model (with `delta` applied, before any erase) as an HF directory here.
    public var saveModel: String?

    public init(configPath: String, eraseRun: String? = nil, sigma: Double = 6, eraseRandom: Int? = nil, seed: UInt64 = 0,
                output: String? = nil, threads: Int? = nil, delta: String? = nil, saveModel: String? = nil) {
        self.configPath = configPath; self.eraseRun = eraseRun; self.sigma = sigma; self.eraseRandom = eraseRandom
        self.seed = seed; self.output = output; self.threads = threads; self.delta = delta; self.saveModel = saveModel
    }
}

/// evaluation.json.
public struct EvaluationReport: Codable, Sendable {
    public struct Erased: Codable, Sendable {
        public var condition: String
        public var neurons: Int
        public var run: String?
        public var sigma: Double?
        public var seed: UInt64?
    }
    public var cnlEvaluation = 1
    public var created: String
    public var configFile: String
    public var config: RunConfig
    public var modelSHA256: String
    public var task: EvaluationTask
    public var erased: Erased
    /// The delta file applied, if any.
    public var delta: String?
    public var statistics: EvaluationStatistics
    public var seconds: Double
    public var samplesPerSecond: Double
    public var ranks: Int

    enum CodingKeys: String, CodingKey {
        case cnlEvaluation = "cnl_evaluation", created, configFile = "config_file", config, modelSHA256 = "model_sha256", task
        case erased, delta, statistics, seconds, samplesPerSecond = "samples_per_second", ranks
    }

    public var summary: [String] {
        let s = statistics
        return [
            String(format: "%@ (%@, %d samples%@): accuracy %.4f (Wilson 95%% %.4f–%.4f, %d correct), answer log-likelihood %.4f ± %.4f (SE)",
                   (configFile as NSString).lastPathComponent, task.kind.rawValue, s.samples,
                   erased.neurons > 0 ? ", \(erased.neurons) neurons erased: \(erased.condition)" : "",
                   s.accuracy, s.accuracyLow, s.accuracyHigh, s.correct, s.logLikelihood, s.logLikelihoodSE),
            String(format: "time %.1f s, %.2f samples/s on %d rank%@", seconds, samplesPerSecond, ranks, ranks == 1 ? "" : "s"),
        ]
    }
}

public enum EvaluateRun {
    /// Runs on every rank; the report on the root, nil elsewhere.
    public static func execute(_ request: EvaluateRequest, log: @escaping (String) -> Void) throws -> EvaluationReport? {
        let driver = Driver(request)
        try EvaluationExecutor.execute(driver, threads: request.threads, log: log)
        return driver.report
    }

    final class Driver: EvaluationDriver {
        let request: EvaluateRequest
        var output = ""
        var set: EvaluationSet?
        var modelSHA = ""
        var erased = EvaluationReport.Erased(condition: "base", neurons: 0, run: nil, sigma: nil, seed: nil)
        var report: EvaluationReport?
        var lock: RunDirectoryLock?

        init(_ request: EvaluateRequest) { self.request = request }

        func plan(log: (String) -> Void) throws -> (work: EvaluationWork, model: TransformerModel, tokenizer: Tokenizer) {
            let config = try RunConfig.load(path: request.configPath)
            output = request.output ?? config.output
            // One job per output directory: a second evaluation into it is refused before anything there is touched.
            lock = try OutputDirectoryLock.acquire(output, command: "cnl evaluate", log: log)
            guard FileManager.default.fileExists(atPath: config.model) else {
                throw CheckpointError.cannotOpen(path: config.model, reason: "no such file or directory; set 'model' in \(request.configPath)")
            }
            // A run of another model is refused before the model is even loaded.
            modelSHA = try RunReport.Fingerprints.hashPath(config.model)
            let run = try request.eraseRun.map(LocatedRun.open)
            try run?.checkModel(fingerprint: modelSHA, config: request.configPath)
            let delta = try request.delta.map(NeuronDelta.read)
            if let delta, let p = request.delta, delta.baseSHA256 != modelSHA {   // before the model is loaded
                throw NeuronDelta.Failure.otherBase(path: p, deltaBase: delta.baseSHA256, model: config.model, modelSHA: modelSHA)
            }
            let loaded = try ModelRegistry.load(path: config.model)
            if let delta, let p = request.delta { try delta.apply(to: loaded.model, modelSHA256: modelSHA, path: p, modelPath: config.model) }
            if let dir = request.saveModel {
                try HFModelWriter.write(loaded.model, sourcePath: config.model, to: dir,
                                        metadata: ["base_sha256": modelSHA, "delta": request.delta ?? ""])
                log("wrote the model\(request.delta.map { " with \($0) applied" } ?? "") to \(dir)/{config.json, model.safetensors}")
            }
            let tokenizer = try loaded.requireTokenizer()
            let d = loaded.model.dimensions
            let set = try EvaluationSet.load(configPath: request.configPath, config: config, tokenizer: tokenizer, contextLength: d.contextLength)
            var condition = EvaluationCondition(key: "base", neurons: [])
            if let run, let runDir = request.eraseRun {
                try run.checkHeldOut(set)
                let mask = try run.mask(sigma: request.sigma)
                condition = EvaluationCondition(key: EraseStudy.locatedKey(run: run.name, sigma: request.sigma), neurons: mask.located)
                erased = .init(condition: condition.key, neurons: mask.count, run: runDir, sigma: request.sigma, seed: nil)
            } else if let n = request.eraseRandom {
                guard n >= 1 && n <= d.neuronCount else { throw EvaluationError.tooManyNeurons(asked: n, neurons: d.neuronCount) }
                condition = EvaluationCondition(key: "uniform:n\(n):seed\(request.seed)",
                                                neurons: RandomNeurons.uniform(count: n, of: d.neuronCount, seed: request.seed))
                erased = .init(condition: condition.key, neurons: n, run: nil, sigma: nil, seed: request.seed)
            }
            try AtomicFile.prepareDirectory(output)
            self.set = set
            log("cnl evaluate: \(set.items.count) samples of \(config.dataset.path) (\(set.task.kind.rawValue)), \(loaded.model.modelType) "
                + "\(d.layers)×\(d.ffnWidth) neurons, erased: \(erased.neurons == 0 ? "none" : "\(erased.neurons) (\(condition.key))")"
                + (delta.map { ", delta \(request.delta!) (\($0.slices.neurons.count) neurons)" } ?? ""))
            let work = EvaluationWork(modelPath: config.model, sets: [.init(name: set.name, task: set.task, items: set.items)],
                                      conditions: [condition], jobs: [.init(set: 0, condition: 0)], deltaPath: request.delta)
            return (work, loaded.model, tokenizer)
        }

        func record(_ index: Int, _ result: JobResult, log: (String) -> Void) throws {
            guard let set else { return }
            let r = EvaluationReport(created: ISO8601DateFormatter().string(from: Date()), configFile: set.configPath, config: set.config,
                                     modelSHA256: modelSHA, task: set.task, erased: erased, delta: request.delta, statistics: result.statistics,
                                     seconds: result.seconds, samplesPerSecond: Double(result.outcomes.count) / max(result.seconds, 1e-9),
                                     ranks: result.ranks)
            func path(_ n: String) -> String { (output as NSString).appendingPathComponent(n) }
            try AtomicFile.write(Data(EvaluationOutputs.samplesCSV(result.outcomes, task: set.task).utf8), to: path("samples.csv"))
            try AtomicFile.write(try EvaluationOutputs.json(r), to: path("evaluation.json"))
            report = r
        }

        func finish() throws {}
    }
}
