// Evaluation on every rank: the root plans, the samples of each (set, erased neurons) job are shared
// among the ranks, the outcomes come back to the root in sample order.
import Engine
import Foundation
import Shard

/// A neuron set erased while evaluating (none: the base model).
public struct EvaluationCondition: Codable, Sendable, Equatable {
    /// Unique within a study, e.g. "base", "located:gsm8k:σ6", "uniform:n118:seed0".
    public var key: String
    /// Flat neuron indices l·J + j, ascending.
    public var neurons: [Int]
}

/// What every rank needs: broadcast by the root after planning.
struct EvaluationWork: Codable {
    struct SetWork: Codable {
        var name: String
        var task: EvaluationTask
        var items: [EvaluationItem]
    }
    /// One evaluation: set `set` with condition `condition` erased.
    struct Job: Codable, Equatable { var set: Int; var condition: Int }

    var modelPath: String
    var sets: [SetWork]
    var conditions: [EvaluationCondition]
    var jobs: [Job]
    /// A delta file every rank applies after loading (the root checked it against the model).
    var deltaPath: String? = nil
}

/// The outcome of one job, on the root.
public struct JobResult: Sendable {
    public var set: String
    public var condition: EvaluationCondition
    public var outcomes: [ItemOutcome]
    public var statistics: EvaluationStatistics
    /// Wall time of the job (slowest rank) and the samples/s it made.
    public var seconds: Double
    public var ranks: Int
}

/// The root's side of an evaluation command (`cnl evaluate`, `cnl erase`): only rank 0 calls it.
protocol EvaluationDriver: AnyObject {
    /// The output directory's lock (OutputDirectoryLock), taken by `plan` on the root before it
    /// reads or writes anything there; the executor releases it however the job ends.
    var lock: RunDirectoryLock? { get set }
    /// The work, or the user's error (printed once by the root while every rank exits 1).
    func plan(log: (String) -> Void) throws -> (work: EvaluationWork, model: TransformerModel, tokenizer: Tokenizer)
    /// Job `index` of the work finished (write it out here: a stop loses at most the job in progress).
    func record(_ index: Int, _ result: JobResult, log: (String) -> Void) throws
    /// Every job finished: the summary files.
    func finish() throws
}

enum EvaluationExecutor {
    /// Runs on every rank. A rank that fails while evaluating takes the job down.
    static func execute(_ driver: EvaluationDriver, threads requested: Int?, log: @escaping (String) -> Void) throws {
        let mpi = try MPIContext()
        defer { mpi.finalize() }
        BLASThreads.set(LocalizationRun.blasThreads(requested: requested, mpi: mpi))
        defer { driver.lock?.release() }

        var planned: (work: EvaluationWork, model: TransformerModel, tokenizer: Tokenizer)?
        let work = try RootDecision.broadcast(mpi, log: log) {
            let p = try driver.plan(log: log)
            try checkSizes(p.work.sets, ranks: mpi.size)
            planned = p
            return p.work
        }

        do {
            let model: TransformerModel, tokenizer: Tokenizer
            if let planned { (model, tokenizer) = (planned.model, planned.tokenizer) } else {
                let loaded = try ModelRegistry.load(path: work.modelPath)
                (model, tokenizer) = (loaded.model, try loaded.requireTokenizer())
                if let p = work.deltaPath {
                    let delta = try NeuronDelta.read(p)
                    try delta.apply(to: model, modelSHA256: delta.baseSHA256, path: p, modelPath: work.modelPath)
                }
            }
            let evaluator = ItemEvaluator(model: model, tokenizer: tokenizer)
            let shares = work.sets.map { assign($0, ranks: mpi.size)[mpi.rank] }
            var erased: (condition: Int, erasure: NeuronErasure)?
            for (j, job) in work.jobs.enumerated() {
                if erased?.condition != job.condition {
                    if let e = erased { model.restore(e.erasure) }
                    erased = (job.condition, try model.erase(work.conditions[job.condition].neurons))
                }
                if let result = try evaluateSet(work.sets[job.set], share: shares[job.set], condition: work.conditions[job.condition],
                                                evaluator: evaluator, mpi: mpi) {
                    try driver.record(j, result, log: log)
                }
            }
            if let e = erased { model.restore(e.erasure) }
        } catch {
            FileHandle.standardError.write(Data("cnl: error: rank \(mpi.rank): \(error.localizedDescription)\n".utf8))
            mpi.abort(code: 1)
        }

        _ = try RootDecision.broadcast(mpi, log: log) { try driver.finish(); return true }
    }

    /// Every set must give each rank at least one sample.
    static func checkSizes(_ sets: [EvaluationWork.SetWork], ranks: Int) throws {
        if let small = sets.first(where: { $0.items.count < ranks }) {
            throw EvaluationError.tooFewSamples(config: small.name, samples: small.items.count, ranks: ranks)
        }
    }

    /// One set evaluated by every rank on its share of the groups (`assign`), the outcomes
    /// gathered on the root in sample order: the root's result, nil on the other ranks.
    static func evaluateSet(_ set: EvaluationWork.SetWork, share: [[Int]], condition: EvaluationCondition, evaluator: ItemEvaluator,
                            mpi: MPIContext) throws -> JobResult? {
        let started = Date()
        var mine: [ItemOutcome] = []
        // The root shows its own share's progress (the ranks' shares are balanced by cost, so it stands for all).
        let progress = mpi.rank == 0 ? ProgressReporter(total: share.map(\.count).reduce(0, +), label: "samples") : nil
        for group in share {
            mine += try evaluator.evaluate(group.map { set.items[$0] }, task: set.task)
            progress?.update(done: mine.count)
        }
        let seconds = Date().timeIntervalSince(started)
        let gathered = try mpi.gatherBytes(Array(try JSONEncoder().encode(Share(outcomes: mine, seconds: seconds))))
        guard let gathered else { return nil }
        let parts = try gathered.map { try JSONDecoder().decode(Share.self, from: Data($0)) }
        let outcomes = parts.flatMap(\.outcomes).sorted { $0.index < $1.index }
        let stats = EvaluationStatistics(correct: outcomes.map(\.correct), logLikelihoods: outcomes.map(\.logLikelihood))
        return JobResult(set: set.name, condition: condition, outcomes: outcomes, statistics: stats,
                         seconds: parts.map(\.seconds).max() ?? seconds, ranks: mpi.size)
    }

    /// Groups of a set's items evaluated together (one batched prompt pass each): runs of
    /// `ItemEvaluator.generateGroup` in the set's order for `generate` (batched decoding), and
    /// for `choice` runs of up to `choiceGroup` items and `choiceGroupTokens` prompt tokens.
    /// They follow the set alone, never the rank count.
    static func groups(_ set: EvaluationWork.SetWork) -> [[Int]] {
        if set.task.kind == .generate {
            let size = ItemEvaluator.generateGroup
            return stride(from: 0, to: set.items.count, by: size).map { Array($0..<min($0 + size, set.items.count)) }
        }
        var out: [[Int]] = [], current: [Int] = [], tokens = 0
        for (i, item) in set.items.enumerated() {
            if !current.isEmpty && (current.count == ItemEvaluator.choiceGroup || tokens + item.prompt.count > ItemEvaluator.choiceGroupTokens) {
                out.append(current); current = []; tokens = 0
            }
            current.append(i); tokens += item.prompt.count
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// The groups of a set per rank: most expensive first, each to the least-loaded rank (ties:
    /// the lowest rank). Every rank computes the same assignment from the broadcast work, and
    /// the groups never depend on the rank count.
    static func assign(_ set: EvaluationWork.SetWork, ranks: Int) -> [[[Int]]] {
        let all = groups(set)
        let cost = all.map { g in g.map { EvaluationSet.cost(set.items[$0], task: set.task) }.reduce(0, +) }
        var load = [Double](repeating: 0, count: ranks)
        var out = [[Int]](repeating: [], count: ranks)
        for gi in all.indices.sorted(by: { cost[$0] != cost[$1] ? cost[$0] > cost[$1] : $0 < $1 }) {
            var r = 0
            for k in 1..<ranks where load[k] < load[r] { r = k }
            out[r].append(gi)
            load[r] += cost[gi]
        }
        return out.map { $0.sorted().map { all[$0] } }
    }

    struct Share: Codable { var outcomes: [ItemOutcome]; var seconds: Double }
}
