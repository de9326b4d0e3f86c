// `cnl locate`: the localization run (Eq. 7 → Eq. 8 → Eq. 9, Appendix E), one process or under mpirun/srun.
import ArgumentParser
import Coordinator
import Foundation

struct Locate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Locate the neurons of a capability: attribute every sample, reduce over ranks, mask, compare halves.",
        discussion: """
        Runs as one process, or as many under `mpirun -np N cnl locate …` or `srun --mpi=pmix cnl locate …`; \
        the samples are shared among the ranks and the scores are bitwise the same for any rank count.

        Writes into the config's output directory: report.json (written last: a finished run), \
        scores.safetensors (Score, Score_a, Score_b float64 [L, J]; Mask_sigma<σ>, Mask_a_…, Mask_b_… uint8), \
        neurons.json, convergence.csv, convergence.svg (Appendix E) and heatmap.svg (Fig. 4).

        Preemption: each rank checkpoints into <output>/checkpoints every --checkpoint-every samples and \
        on SIGUSR1 or SIGTERM, then exits with status 75; running the same command again resumes \
        (with any rank count), and the final scores are bitwise those of an uninterrupted run.

        One job per run directory: the root locks <output>/.lock (its host, pid and Slurm job inside) from \
        before planning until the report is written; a second job into the same directory is refused at once, \
        naming the holder, and a lock whose holder has died is taken over (logged). CNL_RUN_LOCK=file uses an \
        exclusive lock file with a lease (CNL_RUN_LOCK_LEASE seconds, default 120) on file systems without flock.

        Example: mpirun -np 2 .build/release/cnl locate --config configs/gsm8k-final.yaml
        """)

    @Option(help: "Run config (YAML; see configs/).")
    var config: String

    @Option(help: "Model (.gguf file or HF directory); overrides 'model'.")
    var model: String?

    @Option(help: "Data file (.jsonl or .csv); overrides 'dataset.path'.")
    var data: String?

    @Option(help: "Use the first N records; overrides 'dataset.limit'.")
    var limit: Int?

    @Option(help: "Seed of the a/b split; overrides 'seed'.")
    var seed: UInt64?

    @Option(parsing: .singleValue, help: "σ of Eq. 8 (repeat or comma-separate for several masks); overrides 'sigma'.")
    var sigma: [String] = []

    @Option(help: "Spread of Eq. 8: std or var; overrides 'spread'.")
    var spread: String?

    @Option(help: "S of Eq. 7 (integration steps); overrides 'steps'.")
    var steps: Int?

    @Option(help: "Weights of the S+1 points: paper, points or trapezoid; or gauss-legendre with --points K (SPEC \"Quadrature\": not the paper's number, a more accurate integral from fewer rows); overrides 'normalization'.")
    var normalization: String?

    @Option(help: "K, the Gauss–Legendre node count (with --normalization gauss-legendre); overrides 'points'.")
    var points: Int?

    @Option(help: "Attribute at most this many answer tokens; overrides 'max_answer_tokens'.")
    var maxAnswerTokens: Int?

    @Option(help: "Rows (m, l, n) per batch, bounds memory; overrides 'row_budget'.")
    var rowBudget: Int?

    @Option(help: "Pipeline stages: the ranks form groups of this many, stage-major (ranks 0…N/P−1 are stage 0), each rank holding a contiguous range of layers (see --stage-balance) and reading only its tensors; it must divide the rank count. The scores do not depend on it. Overrides 'stages' (default 1).")
    var stages: Int?

    @Option(help: "What the stages' layer ranges even out: work (Eq. 7's rows: the fastest pipeline; the first stage holds more layers) or weights (the least memory per rank, about 1/P of the model each). Overrides 'stage_balance' (default work).")
    var stageBalance: String?

    @Option(help: "How samples reach the ranks: static (a cost-balanced plan made before any rank starts) or dynamic (each rank asks the root for its next sample as it finishes one, so a slow rank takes fewer; not with --stages). The scores do not depend on it. Overrides 'assignment' (default static).")
    var assignment: String?

    @Flag(inversion: .prefixedNo, help: "One copy of the weights per node (of each stage's weights with --stages), in an MPI-3 shared-memory window that one rank fills and the node's others read (default: on whenever ranks holding the same weights share a node).")
    var sharedWeights: Bool?

    @Option(help: "Appendix E sizes, comma-separated (e.g. 25,50,100); overrides 'convergence_grid'.")
    var grid: String?

    @Option(help: "Run directory; overrides 'output'.")
    var output: String?

    @Flag(help: "Overwrite an output directory that already holds a finished run.")
    var force = false

    @Option(help: "Each rank writes a checkpoint after this many of its samples (0: only at the end and on SIGUSR1/SIGTERM).")
    var checkpointEvery = 10

    @Flag(help: "Resume from the output directory's checkpoints (a compatible checkpoint is used even without this flag; with it, its absence is an error).")
    var resume = false

    @Flag(help: "Keep every sample's [L × J] score in <output>/per-sample/ (for cnl converge).")
    var savePerSample = false

    @Option(help: "Precision of the per-sample store: f64 (exact), f32 or bf16.")
    var storePrecision: String = "f32"

    @Option(help: "Threads per rank: workers over row batches, one BLAS thread each; the scores do not depend on it (default: OPENBLAS_NUM_THREADS, else the cores shared among this node's ranks).")
    var threads: Int?

    @Option(help: "Seconds between progress lines when standard error is not a terminal.")
    var progressEvery: Double = 30

    /// Turns the flags into overrides. Values (σ > 0, sizes, paths) are checked with the config on
    /// the root after MPI starts, so a bad one is reported once and every rank exits non-zero.
    func overrides() throws -> RunConfigOverrides {
        var o = RunConfigOverrides()
        o.model = model
        o.dataPath = data
        o.limit = limit
        o.seed = seed
        if !sigma.isEmpty {
            let parts = sigma.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
            o.sigmas = try parts.map { p in
                guard let v = Double(p) else { throw ValidationError("--sigma: '\(p)' is not a number") }
                return v
            }
        }
        if let spread {
            guard let s = Spread(rawValue: spread) else { throw ValidationError("--spread must be std or var, got '\(spread)'") }
            o.spread = s
        }
        o.steps = steps
        if let normalization {
            guard let n = AttributionOptions.Normalization(rawValue: normalization) else {
                throw ValidationError("--normalization must be paper, points, trapezoid or gauss-legendre, got '\(normalization)'")
            }
            o.normalization = n
        }
        o.points = points
        o.maxAnswerTokens = maxAnswerTokens
        o.rowBudget = rowBudget
        o.stages = stages
        if let stageBalance {
            guard let b = StageBalance(rawValue: stageBalance) else { throw ValidationError("--stage-balance must be work or weights, got '\(stageBalance)'") }
            o.stageBalance = b
        }
        if let assignment {
            guard let a = SampleAssignment(rawValue: assignment) else { throw ValidationError("--assignment must be static or dynamic, got '\(assignment)'") }
            o.assignment = a
        }
        if let grid {
            o.convergenceGrid = try grid.split(separator: ",").map { p in
                guard let v = Int(p.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--grid: '\(p)' is not an integer") }
                return v
            }
        }
        o.output = output
        return o
    }

    func run() throws {
        try runOnEveryRank {
            try OptionChecks.threads(threads)
            guard progressEvery > 0 else { throw ValidationError("--progress-every must be positive, got \(progressEvery)") }
            guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every must be 0 or more, got \(checkpointEvery)") }
            guard let precision = ScoreStorePrecision(rawValue: storePrecision) else {
                throw ValidationError("--store-precision must be f64, f32 or bf16, got '\(storePrecision)'")
            }
            if force && resume { throw ValidationError("--force discards checkpoints and --resume requires them; pass one of the two") }
            let request = LocateRequest(configPath: config, overrides: try overrides(), force: force, threads: threads,
                                        progressInterval: progressEvery, checkpointEvery: checkpointEvery, resume: resume,
                                        store: savePerSample ? precision : nil, sharedWeights: sharedWeights ?? true)
            let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            guard let report = try LocalizationRun.execute(request, log: log) else { return }
            for line in report.summary { print(line) }
            print("wrote \(report.config.output)/{report.json, scores.safetensors, neurons.json, convergence.csv, convergence.svg, heatmap.svg}")
        }
    }
}

/// This process's rank as the launcher announces it (before MPI_Init); 0 when not launched by one.
func launcherRank() -> Int {
    let env = ProcessInfo.processInfo.environment
    for key in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
        if let v = env[key].flatMap(Int.init) { return v }
    }
    return 0
}
