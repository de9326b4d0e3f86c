// `cnl evaluate` and `cnl erase`: does a located set carry the capability? (the paper's Table 3, Fig. 5, Table 4)
import ArgumentParser
import Coordinator
import Foundation

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy and answer log-likelihood of the model on a dataset config, optionally with neurons erased.",
        discussion: """
        The config is a run config whose dataset names a task: `task: generate` (greedy decoding, at most \
        max_new_tokens, stopping at a newline or EOS; the first number of the completion against the gold \
        answer's) or `task: choice` (the option with the highest summed log P; options from \
        `dataset.options`, a field with one option per line, or from the answer field's verbalizer). \
        Every task also reports the gold answer's mean token log-likelihood.

        Runs as one process or under mpirun/srun (the samples are shared among the ranks; the outputs are the \
        same for any rank count). Writes <output>/evaluation.json (accuracy with its Wilson 95 % interval, \
        log-likelihood with its standard error) and <output>/samples.csv (one row per sample).

        --erase RUN zeroes the W_in rows and biases of the run's located neurons at --sigma in the loaded \
        model (no checkpoint is written); the evaluation records must not be the run's localization records.

        --delta FILE applies a tuned model kept by cnl enhance (deltas/<arm>-epoch<e>.safetensors) before \
        evaluating; a delta made from another checkpoint is refused, naming both SHA-256 fingerprints.

        Example: mpirun -np 2 cnl evaluate --config configs/table3/eval-boolq.yaml --erase runs/table3/boolq --sigma 6
        """)

    @Option(help: "Run config (YAML) whose dataset has a 'task'.")
    var config: String

    @Option(help: "Erase the located neurons of this finished cnl locate run directory.")
    var erase: String?

    @Option(help: "σ of the located set to erase (computed from the run's scores if the run did not list it).")
    var sigma: Double = 6

    @Option(help: "Erase this many neurons drawn uniformly from all L·J instead.")
    var eraseRandom: Int?

    @Option(help: "Seed of the random draw (SplitMix64).")
    var seed: UInt64 = 0

    @Option(help: "Apply this cnl enhance delta file (tuned neuron slices) to the model first; refused for another base checkpoint.")
    var delta: String?

    @Option(help: "Write the model (with --delta applied) as an HF directory (config.json + model.safetensors) that transformers loads.")
    var saveModel: String?

    @Option(help: "Output directory (default: the config's 'output').")
    var output: String?

    @Option(help: "BLAS threads per rank (default: OPENBLAS_NUM_THREADS, else the cores shared among this node's ranks).")
    var threads: Int?

    func run() throws {
        try runOnEveryRank {
            try OptionChecks.threads(threads)
            if erase != nil && eraseRandom != nil { throw ValidationError("give one of --erase and --erase-random, not both") }
            guard sigma > 0 && sigma.isFinite else { throw ValidationError("--sigma must be a positive number, got \(sigma)") }
            if let n = eraseRandom, n < 1 { throw ValidationError("--erase-random must be at least 1, got \(n)") }
            let request = EvaluateRequest(configPath: config, eraseRun: erase, sigma: sigma, eraseRandom: eraseRandom, seed: seed,
                                          output: output, threads: threads, delta: delta, saveModel: saveModel)
            guard let report = try EvaluateRun.execute(request, log: logLine) else { return }
            for line in report.summary { print(line) }
            print("wrote \(output ?? report.config.output)/{evaluation.json, samples.csv}")
        }
    }
}

struct Erase: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Table 3: erase each run's located neurons and as many random ones; evaluate every set; the cross-dataset matrix.",
        discussion: """
        For every run directory and every --eval config: the base model, the run's located neurons erased \
        (whole-data mask at each σ), and K random sets of the same size erased (seeds 0..K-1), by each \
        --baseline: uniform (from all L·J neurons, the paper's) or layer-matched (the located set's count in \
        each layer). Writes into --output: erase.json, erase.csv, erase.md (the tables), erase.svg (drops \
        with error bars), cross.csv and cross.svg (located on × evaluated on: the located drop minus the mean \
        random drop), and jobs/ with every evaluation's per-sample outcomes. Running the same command again \
        reuses the finished evaluations in jobs/ (a stopped study resumes); --force discards them.

        Refused before any evaluation: a run directory without a finished run, an evaluation config of another \
        model than a run's (compared by SHA-256), and an evaluation set sharing a record with a run's \
        localization samples.

        Example: mpirun -np 2 cnl erase runs/table3/gsm8k runs/table3/boolq --eval configs/table3/eval-gsm8k.yaml \
        --eval configs/table3/eval-boolq.yaml --sigma 3,6,12 --random-seeds 5 --output runs/table3/erase
        """)

    @Argument(help: "Run directories of finished cnl locate runs.")
    var runs: [String] = []

    @Option(name: .customLong("eval"), parsing: .singleValue, help: "Evaluation config (repeat for several sets).")
    var evals: [String] = []

    @Option(parsing: .singleValue, help: "σ of the located sets (repeat or comma-separate).")
    var sigma: [String] = ["6"]

    @Option(help: "K: random draws per baseline (seeds 0..K-1).")
    var randomSeeds = 5

    @Option(parsing: .singleValue, help: "Random baseline: uniform or layer-matched (repeat or comma-separate for both).")
    var baseline: [String] = ["uniform", "layer-matched"]

    @Option(help: "Evaluate pairs whose run localized on another data file only at this σ (the cross matrix's); default: every σ.")
    var crossSigma: Double?

    @Option(help: "Which (run, set) pairs to evaluate: all (Table 3 and the cross matrix) or own (each run on the sets of its own data file).")
    var pairs: String = "all"

    @Option(help: "Output directory.")
    var output: String = "runs/erase"

    @Flag(help: "Discard the finished evaluations of an earlier study in the output directory.")
    var force = false

    @Option(help: "BLAS threads per rank (default: OPENBLAS_NUM_THREADS, else the cores shared among this node's ranks).")
    var threads: Int?

    func run() throws {
        try runOnEveryRank {
            try OptionChecks.study(runs: runs, evals: evals)
            try OptionChecks.threads(threads)
            try OptionChecks.randomSeeds(randomSeeds)
            let sigmas = try sigma.flatMap { $0.split(separator: ",") }.map { p -> Double in
                guard let v = Double(p.trimmingCharacters(in: .whitespaces)), v > 0, v.isFinite else {
                    throw ValidationError("--sigma: '\(p)' is not a positive number")
                }
                return v
            }
            let baselines = try baseline.flatMap { $0.split(separator: ",") }.map { p -> RandomBaseline in
                guard let b = RandomBaseline(rawValue: p.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--baseline must be uniform or layer-matched, got '\(p)'")
                }
                return b
            }
            guard pairs == "all" || pairs == "own" else { throw ValidationError("--pairs must be all or own, got '\(pairs)'") }
            if let c = crossSigma, !sigmas.contains(c) { throw ValidationError("--cross-sigma \(c) is not one of --sigma \(sigma.joined(separator: ","))") }
            let request = EraseRequest(runs: runs, evals: evals, sigmas: sigmas, randomSeeds: randomSeeds, baselines: randomSeeds > 0 ? baselines : [],
                                       output: output, crossSigma: crossSigma, ownPairsOnly: pairs == "own", force: force, threads: threads)
            guard let report = try EraseStudy.execute(request, log: logLine) else { return }
            print("\(report.rows.count) Table 3 rows in \(String(format: "%.1f", report.seconds)) s; wrote \(output)/{\(EraseOutputs.files.joined(separator: ", "))}")
        }
    }
}

func logLine(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// The error handling of an MPI command: a planning error is printed once by the root (every
/// rank exits 1); an option error, found identically on every rank before MPI starts, is
/// printed by the first rank only.
func runOnEveryRank(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch LocalizationError.failedOnAnotherRank {
        throw ExitCode(1)
    } catch is PlanFailure {
        throw ExitCode(1)
    } catch let e as ValidationError {
        if launcherRank() == 0 { FileHandle.standardError.write(Data("cnl: error: \(e.message)\n".utf8)) }
        throw ExitCode(1)
    } catch let e as ExitCode {
        throw e
    } catch {
        FileHandle.standardError.write(Data("cnl: error: \(error.localizedDescription)\n".utf8))
        throw ExitCode(1)
    }
}
