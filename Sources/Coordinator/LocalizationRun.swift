// One `cnl locate` run on every rank: plan on the root, attribute everywhere, reduce, report on the root.
import Engine
import Foundation
import Shard

/// What the command line asks for.
public struct LocateRequest: Sendable {
    public var configPath: String
    public var overrides: RunConfigOverrides
    /// Overwrite a run directory that already holds a finished run.
    public var force: Bool
    /// Threads per rank (nil: OPENBLAS_NUM_THREADS, else cores shared among the node's ranks):
    /// workers over row batches with one BLAS thread each; the BLAS threads elsewhere.
    public var threads: Int?
    /// Seconds between progress lines when standard error is not a terminal.
    public var progressInterval: TimeInterval
    /// Each rank checkpoints after this many of its samples (0: only at the end and on signals).
    public var checkpointEvery: Int
    /// Require a checkpoint to resume from (without it a compatible checkpoint is still used).
    public var resume: Bool
    /// Keep every sample's score in the per-sample store, at this precision.
    public var store: StorePrecision?
    /// One copy of the weights per node for the ranks that hold the same ones.
    public var sharedWeights: Bool

    public init(configPath: String, overrides: RunConfigOverrides = RunConfigOverrides(), force: Bool = false,
                threads: Int? = nil, progressInterval: TimeInterval = 30, checkpointEvery: Int = 10, resume: Bool = false,
                store: StorePrecision? = nil, sharedWeights: Bool = true) {
        self.configPath = configPath; self.overrides = overrides; self.force = force
        self.threads = threads; self.progressInterval = progressInterval
        self.checkpointEvery = checkpointEvery; self.resume = resume; self.store = store; self.sharedWeights = sharedWeights
    }
}

/// What the root broadcasts after planning a localization job: what every rank needs to attribute its samples.
struct LocateWork: Codable {
    var modelPath: String
    var options: AttributionOptions
    var buckets: Int
    /// Samples attributed by this job (all but those already in checkpoints).
    var totalSamples: Int
    var assignment: [[ShardSample]]
    var generation: Int
    var identity: [String: String]
    var runDirectory: String
    var store: StorePrecision?
    /// Pipeline stages per group: with G = ranks / P groups, world rank r is stage r / G of group r mod G.
    var stages: Int
    var stageBalance: StageBalance
    var sharedWeights: Bool
    /// Dynamic: `assignment` is one queue that the ranks take samples from as they finish.
    var dynamic: Bool
}

public enum LocalizationRun {
    /// Runs on every rank. Returns the report on the root and nil elsewhere. An error of the
    /// plan (bad input) is thrown on the root and `failedOnAnotherRank` elsewhere, so only the
    /// root prints it; an error while attributing takes the whole job down (MPI_Abort) after
    /// the failing rank prints it, since the others would otherwise wait for it forever.
    public static func execute(_ request: LocateRequest, log: @escaping (String) -> Void) throws -> RunReport? {
        let started = Date()
        let mpi = try MPIContext()
        defer { mpi.finalize() }
        CheckpointKeeper.catchStopSignals()
        let threads = blasThreads(requested: request.threads, mpi: mpi)
        BLASThreads.set(threads)

        // 1. Plan on the root; broadcast it (or the error).
        var rootState: RootState?
        let work = try RootDecision.broadcast(mpi, log: log) {
            // With other ranks about, the weights are read after the plan, once the ranks
            // know who shares them; planning checks the checkpoint without reading them.
            let state = try plan(request, ranks: mpi.size, placement: request.sharedWeights && mpi.size > 1 ? .skeleton : .own, log: log)
            rootState = state
            return LocateWork(modelPath: state.config.model, options: state.config.attributionOptions,
                              buckets: state.plan.bucketCount, totalSamples: state.plan.assignment.map(\.count).reduce(0, +),
                              assignment: state.plan.assignment, generation: state.generation, identity: state.identity,
                              runDirectory: state.config.output, store: request.store, stages: state.config.stages, stageBalance: state.config.stageBalance,
                              sharedWeights: request.sharedWeights, dynamic: state.config.assignment == .dynamic)
        }
        let planned = Date()

        // 2. Every rank attributes its samples, committing each to its checkpoint keeper (the
        //    root's keeper starts from what earlier jobs finished, the others' from zero). With
        //    stages, world rank r is stage r / G of group r mod G (G = ranks / P groups); a group
        //    works like one rank of a run without stages, through its first stage (the "lead"),
        //    which keeps the group's sums and checkpoints; the other stages only compute their
        //    layers. Stage-major order (as Megatron puts pipeline stages outermost): mpirun and
        //    srun place consecutive ranks on one node, so a node holds one stage's weights (or a
        //    few), not the whole model, once the job spans as many nodes as stages.
        let P = work.stages
        let G = mpi.size / P
        let (group, stage) = (mpi.rank % G, mpi.rank / G)
        let groupContext = P > 1 ? try mpi.split(color: group, key: stage) : nil
        let leads = P > 1 ? try mpi.split(color: stage, key: group) : mpi
        // The ranks of this node that hold the same weights (the same stage) share one copy.
        let node = try mpi.splitByNode(key: mpi.rank)
        let sharers = try node.split(color: stage, key: mpi.rank)
        let nodeWeights = work.sharedWeights && sharers.size > 1 ? NodeSharedWeights(sharers: sharers) : nil
        // Nodes are named by their lowest world rank.
        let nodeLeader = Int(String(decoding: try node.broadcast(node.rank == 0 ? Array(String(mpi.rank).utf8) : []), as: UTF8.self)) ?? 0
        let checkpoints = CheckpointDirectory(run: work.runDirectory)
        var keeper: CheckpointKeeper?
        var stats = ShardStatistics(samples: 0, answerTokens: 0, rows: 0, flops: 0, seconds: 0)
        var rankRecord: RunReport.Placement.Rank?
        /// Dynamic assignment, on the root: the rank that attributed each queue entry.
        var queueOwners: [Int]?
        var stageExit: StopSignalExit?
        do {
            let stageRequest = P > 1 ? StageRequest(index: stage, count: P, balance: work.stageBalance) : nil
            let loadStart = Date()
            let planned = rootState.map(\.loaded.model).flatMap { $0.parameters.fills ? $0 : nil }
            let model = try nodeWeights.map { try ModelRegistry.load(path: work.modelPath, stage: stageRequest, placement: .shared($0)).model }
                ?? planned ?? ModelRegistry.load(path: work.modelPath, stage: stageRequest).model
            let loadSeconds = Date().timeIntervalSince(loadStart)
            let scoreCount = model.dimensions.neuronCount
            let link = groupContext.map { MPIStageLink(group: $0) }
            let samples = work.dynamic ? [] : work.assignment[group]
            if stage == 0 {
                let store = try work.store.map {
                    try PerSampleStore(directory: (work.runDirectory as NSString).appendingPathComponent(PerSampleIndex.directoryName),
                                       name: "g\(work.generation)-r\(group).zst", precision: $0)
                }
                let header = RunCheckpoint.Header(identity: work.identity, generation: work.generation, rank: group, ranks: leads.size,
                                                  scoreCount: scoreCount, buckets: work.buckets, finished: rootState?.inherited.finished ?? [])
                let k = CheckpointKeeper(path: checkpoints.file(generation: work.generation, rank: group), header: header,
                                         sums: rootState?.inherited.sums ?? ScoreAccumulator(scoreCount: scoreCount, buckets: work.buckets),
                                         every: request.checkpointEvery, store: store)
                k.watchSignals(rank: mpi.rank)
                keeper = k
                // `threads` workers over row batches, one BLAS thread each (a stage: its BLAS
                // threads): the bytes do not depend on it.
                let attributor: SampleStreamAttributor = try link.map { try StageAttributor(model: model, options: work.options, link: $0) }
                    ?? SampleAttributor(model: model, options: work.options, workers: threads)
                let progress = mpi.rank == 0 ? ProgressReporter(total: work.totalSamples, interval: request.progressInterval) : nil
                if work.dynamic {
                    let queue = work.assignment[0]
                    (stats, queueOwners) = try LocalizationShard.runDynamic(mpi: leads, attributor: attributor, queue: queue, keeper: k, progress: progress)
                } else {
                    stats = try LocalizationShard.run(mpi: leads, attributor: attributor, samples: samples, keeper: k,
                                                      totalSamples: work.totalSamples, progress: progress)
                }
            } else {
                stageExit = StopSignalExit(rank: mpi.rank, stage: stage)
                let attributor = try StageAttributor(model: model, options: work.options, link: link!)
                let start = Date()
                try attributor.attribute(samples: samples.map { ($0.prompt, $0.answer) }) { _, _ in }
                stats.seconds = Date().timeIntervalSince(start)
            }
            rankRecord = .init(rank: mpi.rank, group: group, stage: stage, layers: model.slice.layers, node: nodeLeader, seconds: stats.seconds,
                               waitSeconds: link?.waitSeconds ?? 0, loadSeconds: loadSeconds, weightBytes: model.parameters.count * 4,
                               sharedWeights: nodeWeights != nil)
        } catch {
            FileHandle.standardError.write(Data("cnl: error: rank \(mpi.rank)\(P > 1 ? " (stage \(stage) of group \(group))" : ""): \(error.localizedDescription)\n".utf8))
            // The abort kills the root too: its lock goes first, so a resubmission finds none.
            RunDirectoryLock.releaseHeld()
            mpi.abort(code: 1)
        }
        let attributed = Date()

        // 3. Exact reduction to the root, over the groups' first stages.
        var total: [Int64]?, perRank: [Double]?
        if let keeper {
            total = try leads.sumInt64(keeper.sums.flattened())
            perRank = try leads.gather([Double(stats.samples), Double(stats.answerTokens), Double(stats.rows), stats.flops, stats.seconds,
                                        Double(keeper.storeBytes.raw), Double(keeper.storeBytes.compressed), Double(keeper.writes)])
            keeper.ignoreStopSignals()
        }
        let perWorldRank = try mpi.gatherBytes(Array(try JSONEncoder().encode(rankRecord)))
        stageExit?.ignore()
        if ProcessInfo.processInfo.environment["CNL_TEST_SIGNAL_AFTER_REDUCTION"] != nil {
            // Test hook: Slurm's warning arriving while the root writes the outputs.
            raise(SIGUSR1)
            usleep(300_000)
        }

        // 4. The root computes the paper's numbers and writes the run directory; every rank
        //    learns whether that worked, so a failure there still fails every rank.
        var report: RunReport?
        let written = Result {
            try RootDecision.broadcast(mpi, log: log) { () -> Bool in
                guard let state = rootState, let total, let perRank, let sums = keeper?.sums else { return true }
                var estimatedCost = state.plan.estimatedCost
                if let queueOwners {
                    // Dynamic: each rank's estimate is that of the samples it took.
                    let d = state.loaded.model.dimensions
                    estimatedCost = [Double](repeating: 0, count: leads.size)
                    for (sample, owner) in zip(state.plan.assignment[0], queueOwners) where owner >= 0 {
                        estimatedCost[owner] += RunPlan.cost(sample, layers: d.layers, steps: state.config.pointsPerLayer - 1,
                                                             maxAnswerTokens: state.config.maxAnswerTokens)
                    }
                }
                let reduced = ScoreAccumulator(scoreCount: sums.scoreCount, flattened: total)
                let d = state.loaded.model.dimensions
                let result = try LocalizationResult(sums: reduced, plan: state.plan, sigmas: state.config.sigmas,
                                                    spread: state.config.spread, layers: d.layers, ffnWidth: d.ffnWidth)
                let reduceEnd = Date()
                let timings = RunReport.Timings(
                    totalSeconds: reduceEnd.timeIntervalSince(started), planSeconds: planned.timeIntervalSince(started),
                    attributionSeconds: attributed.timeIntervalSince(planned), reduceSeconds: reduceEnd.timeIntervalSince(attributed),
                    samplesPerSecond: Double(work.totalSamples) / attributed.timeIntervalSince(planned),
                    perRank: (0..<leads.size).map { r in
                        let v = Array(perRank[(8 * r)..<(8 * r + 8)])
                        return .init(rank: r, samples: Int(v[0]), answerTokens: Int(v[1]), rows: Int(v[2]), flops: v[3],
                                     seconds: v[4], estimatedCost: estimatedCost[r], checkpointsWritten: Int(v[7]))
                    })
                var r = RunReport(state: state, result: result, ranks: mpi.size, blasThreads: threads, timings: timings)
                r.stages = P
                if let perWorldRank {
                    let placement = RunReport.Placement(ranks: try perWorldRank.map { try JSONDecoder().decode(RunReport.Placement.Rank.self, from: Data($0)) })
                    r.placement = placement
                    if P > 1 { r.pipeline = RunReport.Pipeline(placement: placement, stages: P) }
                }
                if let precision = request.store {
                    // Every rank wrote its final checkpoint before the reduction: they list where each score is.
                    guard let final = try checkpoints.latest(identity: state.identity, scoreCount: sums.scoreCount, buckets: state.plan.bucketCount),
                          final.finished.count == state.plan.sampleCount else {
                        throw LocalizationError.lostSamples(expected: state.plan.sampleCount, got: 0)
                    }
                    let raw = (0..<leads.size).map { perRank[8 * $0 + 5] }.reduce(0, +), packed = (0..<leads.size).map { perRank[8 * $0 + 6] }.reduce(0, +)
                    r.perSampleStore = try PerSampleIndex.write(run: state.config.output, precision: precision, plan: state.plan,
                                                                seed: state.config.seed, samples: state.samples, entries: final.finished,
                                                                layers: result.layers, ffnWidth: result.ffnWidth,
                                                                thisJob: (raw: Int(raw), compressed: Int(packed), samples: work.totalSamples))
                }
                try RunOutputs.write(result: result, report: r, plan: state.plan, config: state.config)
                // The report marks the run finished; its checkpoints are no longer needed.
                checkpoints.removeAll()
                report = r
                return true
            }
        }
        // The report is written (or failed to be): the directory is free for the next job.
        rootState?.runLock.release()
        // Every rank is past its last use of the model: the shared window can go.
        try nodeWeights?.free()
        _ = try written.get()
        return report
    }

    /// What only the root holds between planning and reporting.
    struct RootState {
        var config: RunConfig
        var configPath: String
        var loaded: LoadedModel
        var plan: RunPlan
        var samples: [TokenizedSample]
        var fingerprints: RunReport.Fingerprints
        var identity: [String: String]
        var generation: Int
        /// What earlier jobs of this run finished (from the newest checkpoints).
        var inherited: (sums: ScoreAccumulator, finished: [FinishedSample])
        /// The run directory's lock, held from before planning until the report is written.
        var runLock: RunDirectoryLock
    }

    /// Config, model, data, output directory, split and assignment: everything that can be
    /// wrong with the input is found here, before any rank starts the long part.
    static func plan(_ request: LocateRequest, ranks: Int, placement: WeightPlacement, log: (String) -> Void) throws -> RootState {
        let config = try request.overrides.applied(to: RunConfig.load(path: request.configPath))
        let runLock = try OutputDirectoryLock.acquire(config.output, command: "cnl locate", log: log)
        do {
            return try plan(request, config: config, runLock: runLock, ranks: ranks, placement: placement, log: log)
        } catch {
            runLock.release()
            throw error
        }
    }

    static func plan(_ request: LocateRequest, config: RunConfig, runLock: RunDirectoryLock, ranks: Int, placement: WeightPlacement,
                     log: (String) -> Void) throws -> RootState {
        try prepareOutput(config.output, force: request.force)
        guard FileManager.default.fileExists(atPath: config.model) else {
            throw CheckpointError.cannotOpen(path: config.model, reason: "no such file or directory; set 'model' in the config or pass --model")
        }
        guard FileManager.default.fileExists(atPath: config.dataset.path) else {
            throw DataFileError.unreadable(path: config.dataset.path, reason: "no such file; set 'dataset.path' in the config or pass --data")
        }
        // With stages the root holds stage 0 of its group only (and reads only its tensors).
        let loaded = try ModelRegistry.load(path: config.model, stage: config.stages > 1 ? StageRequest(index: 0, count: config.stages, balance: config.stageBalance) : nil,
                                            placement: placement)
        guard ranks % config.stages == 0 else { throw StageError.notDividing(stages: config.stages, ranks: ranks) }
        let groups = ranks / config.stages
        let tokenizer = try loaded.requireTokenizer()
        let d = loaded.model.dimensions
        let texts = try DatasetLoader.texts(config.dataset)
        let samples = try DatasetLoader.tokenize(texts, path: config.dataset.path, tokenizer: tokenizer,
                                                 contextLength: d.contextLength, maxAnswerTokens: config.maxAnswerTokens)
        let fingerprints = try RunReport.Fingerprints(modelPath: config.model, dataPath: config.dataset.path, samples: samples)
        var (plan, bucketed) = try RunPlan.layout(samples: samples, ranks: groups, seed: config.seed, grid: config.convergenceGrid,
                                                  dataPath: config.dataset.path)
        let identity = runIdentity(config: config, fingerprints: fingerprints, samples: samples.count, grid: plan.grid,
                                   neurons: "\(d.layers)x\(d.ffnWidth)", store: request.store)

        // Resume from the newest checkpoints when there are any (they must be of this run).
        let checkpoints = CheckpointDirectory(run: config.output)
        let previous = try checkpoints.latest(identity: identity, scoreCount: d.neuronCount, buckets: plan.bucketCount)
        if request.resume && previous == nil {
            throw LocalizationError.nothingToResume(directory: checkpoints.path)
        }
        let generation = previous.map { $0.generation + 1 } ?? 0
        let inherited = (sums: previous?.sums ?? ScoreAccumulator(scoreCount: d.neuronCount, buckets: plan.bucketCount),
                         finished: previous?.finished ?? [])
        plan.assign(bucketed, ranks: groups, layers: d.layers, steps: config.pointsPerLayer - 1, maxAnswerTokens: config.maxAnswerTokens,
                    finished: Set(inherited.finished.map(\.index)), dynamic: config.assignment == .dynamic)
        log("cnl locate: \(loaded.model.modelType) \(d.layers)×\(d.ffnWidth) neurons from \(config.model); OpenBLAS kernels \(BLASCore.current)")
        log("cnl locate: \(samples.count) samples of \(config.dataset.path) (a: \(plan.sizeA), b: \(plan.sizeB), seed \(config.seed)); "
            + (config.normalization == .gaussLegendre ? "Gauss–Legendre K = \(config.points ?? 0)" : "S = \(config.steps)") + ", σ = \(config.sigmas.map { String(format: "%g", $0) }.joined(separator: ", ")); "
            + "Appendix E grid \(plan.grid); \(ranks) rank\(ranks == 1 ? "" : "s")"
            + (config.assignment == .dynamic ? ", dynamic assignment" : "")
            + (config.stages > 1 ? " in \(groups) group\(groups == 1 ? "" : "s") of \(config.stages) stages (stage 0: layers \(loaded.model.slice.layers))" : ""))
        if let previous {
            log("cnl locate: resuming: \(previous.finished.count) of \(samples.count) samples are in the checkpoints of job \(previous.generation); "
                + "\(samples.count - previous.finished.count) to go")
        }
        // Before any rank starts: this generation's root checkpoint holds all earlier work, so
        // the older files can go (a crash in between leaves both; the newer one is used).
        try FileManager.default.createDirectory(atPath: checkpoints.path, withIntermediateDirectories: true)
        let header = RunCheckpoint.Header(identity: identity, generation: generation, rank: 0, ranks: groups, scoreCount: d.neuronCount,
                                          buckets: plan.bucketCount, finished: inherited.finished)
        try RunCheckpoint(header: header, sums: inherited.sums).write(to: checkpoints.file(generation: generation, rank: 0))
        checkpoints.removeOlder(than: generation)
        return RootState(config: config, configPath: request.configPath, loaded: loaded, plan: plan, samples: samples,
                         fingerprints: fingerprints, identity: identity, generation: generation, inherited: inherited, runLock: runLock)
    }

    /// What the sums depend on; a checkpoint with other values is refused, naming each one.
    /// σ and the spread only act on the final sums, so they may change between jobs.
    static func runIdentity(config: RunConfig, fingerprints: RunReport.Fingerprints, samples: Int, grid: [Int],
                            neurons: String, store: StorePrecision?) -> [String: String] {
        [
            "model (sha256)": fingerprints.model,
            "data file (sha256)": fingerprints.data,
            "tokenized samples (sha256)": fingerprints.samples,
            "samples": "\(samples)",
            "neurons": neurons,
            "seed": "\(config.seed)",
            "convergence_grid": grid.map(String.init).joined(separator: ","),
            "steps": "\(config.steps)",
            "normalization": config.normalization.rawValue + (config.points.map { " \($0) points" } ?? ""),
            "max_answer_tokens": config.maxAnswerTokens.map(String.init) ?? "all",
            "row_budget": "\(config.rowBudget)",
            "per-sample store": store?.rawValue ?? "off",
        ]
    }

    /// The run directory must be writable now (not after an hour of work) and must not hold a
    /// finished run unless `force`; with `force` the old report goes first, so a half-done new
    /// run never sits beside a report that claims to describe it.
    static func prepareOutput(_ path: String, force: Bool) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw LocalizationError.outputNotDirectory(path: path)
        }
        let report = (path as NSString).appendingPathComponent(RunOutputs.reportName)
        if FileManager.default.fileExists(atPath: report) {
            guard force else { throw LocalizationError.finishedRun(directory: path) }
            try? FileManager.default.removeItem(atPath: report)
        }
        if force {
            // A forced run starts over: no checkpoint or stored score of an earlier run survives.
            CheckpointDirectory(run: path).removeAll()
            try? FileManager.default.removeItem(atPath: (path as NSString).appendingPathComponent(PerSampleIndex.directoryName))
        }
        try AtomicFile.prepareDirectory(path)
    }

    /// One BLAS thread per rank unless told otherwise: mpirun pins each rank to a core, and
    /// ranks that each spawn a thread per core would fight over them.
    /// A rank whose affinity allows fewer CPUs than its threads says so once (its threads
    /// would share them: mpirun binds each rank to one core by default for up to 2 ranks).
    static func blasThreads(requested: Int?, mpi: MPIContext) -> Int {
        let threads = resolvedThreads(requested: requested, mpi: mpi)
        if let allowed = CPUAffinity.allowedCPUs, allowed < threads {
            FileHandle.standardError.write(Data(("cnl: warning: rank \(mpi.rank) runs \(threads) threads but may use only \(allowed) CPU\(allowed == 1 ? "" : "s") "
                + "(its affinity); under mpirun pass --bind-to none or --map-by slot:PE=\(threads), under srun --cpus-per-task=\(threads)\n").utf8))
        }
        return threads
    }

    static func resolvedThreads(requested: Int?, mpi: MPIContext) -> Int {
        if let requested { return requested }
        let env = ProcessInfo.processInfo.environment
        if let v = env["OPENBLAS_NUM_THREADS"].flatMap(Int.init), v >= 1 { return v }
        let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? env["SLURM_NTASKS_PER_NODE"].flatMap(Int.init) ?? mpi.size
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, local))
    }
}

/// An error of the root's planning or reporting, already printed as one `cnl: error:` line
/// through the run's log. It is printed when it is made, before MPI is finalized: the other
/// ranks exit 1 as soon as they are past MPI_Finalize, and mpirun then kills the root, which
/// could lose the line if the root only printed it afterwards (seen once in a full-suite run).
public struct PlanFailure: Error, LocalizedError {
    public let message: String
    public var errorDescription: String? { message }

    init(reporting message: String, log: (String) -> Void) {
        self.message = message
        log("cnl: error: \(message)")
    }
}
