// `cnl enhance`: tune only the located neurons (the paper's Table 2, Fig. 5a's cross matrix, Table 5).
import ArgumentParser
import Coordinator
import Foundation

struct Enhance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Table 2: fine-tune only the located neurons, as many random ones, or every neuron but the located; evaluate after each listed epoch.",
        discussion: """
        Each run directory is paired with the --train config at the same position: its located neurons (whole-data \
        mask at --sigma) are tuned on that config's records (prompt → gold answer, the answer tokens' mean NLL, \
        teacher-forced). The arms: located; random (as many neurons drawn uniformly from all L·J, seeds \
        0..K-1); without-located (the located neurons erased, every other neuron trained). Each neuron's W_in row \
        (and bias, where the model has one) trains (--up-and-down: also its W_up row and W_out column); nothing else in the model changes. \
        Adam (β 0.9, 0.999, ε 1e-8, no weight decay), a seeded shuffle every epoch, batches shared among the \
        ranks and summed exactly: the tuned weights are the same bits for any rank count.

        After every listed epoch each arm is evaluated on every --eval config (as cnl evaluate does) and its tuned \
        slices are written to <output>/deltas/<run>_<arm>-epoch<e>.safetensors (apply one with cnl evaluate --delta). \
        Writes <output>/enhance.json, enhance.csv, enhance.md (Table 2, Table 5, the cross matrix), enhance.svg \
        and cross.csv / cross.svg. The state after every epoch is kept in <output>/jobs/: the same command again \
        resumes a stopped study to the same bytes; --force starts over.

        Refused before any training: an evaluation record that is also a training record or one of a run's \
        localization records, a σ that locates no neuron, another model than the runs', a bad --lr or --epochs.

        Example: mpirun -np 2 cnl enhance runs/table3/gsm8k --train configs/table2/train-gsm8k.yaml \
        --eval configs/table2/eval-gsm8k.yaml --eval configs/table2/eval-asdiv.yaml --epochs 1,5,10 --random-seeds 3
        """)

    @Argument(help: "Run directories of finished cnl locate runs (one --train per run, in the same order).")
    var runs: [String] = []

    @Option(name: .customLong("train"), parsing: .singleValue, help: "Training config of the run at the same position (repeat).")
    var trains: [String] = []

    @Option(name: .customLong("eval"), parsing: .singleValue, help: "Evaluation config (repeat for several sets).")
    var evals: [String] = []

    @Option(help: "σ of the located set.")
    var sigma: Double = 6

    @Option(help: "Evaluate after these epochs (comma-separated, increasing); training runs to the last.")
    var epochs: String = "1,5,10"

    @Option(help: "K: random arms (seeds 0..K-1).")
    var randomSeeds = 3

    @Option(help: "Arms to train (comma-separated): located, random, without-located.")
    var arms: String = "located,random,without-located"

    @Option(help: "Adam's learning rate.")
    var lr: Double = 1e-5

    @Option(help: "Samples per batch (shared among the ranks).")
    var batchSize = 8

    @Option(help: "Seed of the per-epoch shuffle.")
    var seed: UInt64 = 0

    @Flag(help: "Also train each chosen neuron's W_up row and W_out column.")
    var upAndDown = false

    @Option(help: "Output directory.")
    var output: String = "runs/enhance"

    @Option(help: "Write each run's located arm after the last epoch as an HF directory <dir>/<run> (config.json + model.safetensors).")
    var saveModel: String?

    @Flag(help: "Discard the finished arms and states of an earlier study in the output directory.")
    var force = false

    @Option(help: "Threads per rank: training runs that many of the rank's samples at once, one BLAS thread each; evaluation runs on that many BLAS threads (default: OPENBLAS_NUM_THREADS, else the cores shared among this node's ranks).")
    var threads: Int?

    func run() throws {
        try runOnEveryRank {
            try OptionChecks.study(runs: runs, evals: evals)
            if trains.count != runs.count {
                throw ValidationError("\(runs.count) run director\(runs.count == 1 ? "y" : "ies") but \(trains.count) --train config\(trains.count == 1 ? "" : "s"); give one --train per run, in the same order")
            }
            try OptionChecks.threads(threads)
            guard lr > 0 && lr.isFinite else { throw ValidationError("--lr must be a positive finite number, got \(lr)") }
            guard sigma > 0 && sigma.isFinite else { throw ValidationError("--sigma must be a positive number, got \(sigma)") }
            guard batchSize >= 1 && batchSize <= 4096 else { throw ValidationError("--batch-size must be between 1 and 4096, got \(batchSize)") }
            try OptionChecks.randomSeeds(randomSeeds)
            let epochList = try epochs.split(separator: ",", omittingEmptySubsequences: false).map { p -> Int in
                guard let v = Int(p.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--epochs: '\(p)' is not a whole number") }
                return v
            }
            do { try EnhanceStudy.checkEpochs(epochList) } catch { throw ValidationError(error.localizedDescription) }
            let armList = try arms.split(separator: ",").map { p -> EnhanceArm in
                guard let a = EnhanceArm(rawValue: p.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--arms: '\(p)' is not one of located, random, without-located")
                }
                return a
            }
            if armList.isEmpty { throw ValidationError("--arms: give at least one of located, random, without-located") }
            let request = EnhanceRequest(runs: runs, trains: trains, evals: evals, sigma: sigma, epochs: epochList, randomSeeds: randomSeeds,
                                         arms: armList, settings: TrainingSettings(learningRate: lr, batchSize: batchSize, seed: seed, upAndDown: upAndDown),
                                         output: output, force: force, threads: threads, saveModel: saveModel)
            guard let report = try EnhanceStudy.execute(request, log: logLine) else { return }
            print("\(report.arms.count) arms, \(report.rows.count) Table 2 rows in \(String(format: "%.1f", report.seconds)) s; "
                  + "wrote \(output)/{\(EnhanceOutputs.files.joined(separator: ", "))} and \(output)/deltas/")
        }
    }
}
