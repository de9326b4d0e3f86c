// `cnl bench …`: timings anyone can re-run (forward speed now; attribution speed later).
import ArgumentParser
import Coordinator
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print measured numbers.",
        subcommands: [BenchForward.self, BenchAttribution.self, BenchEnhance.self])
}

struct BenchForward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Time a prompt pass and greedy decoding with the KV cache.")

    @OptionGroup var options: ModelOptions

    @Option(help: "Comma-separated prompt token ids (default: --prompt-tokens ids 1000, 1001, …).")
    var tokenIds: String?

    @Option(help: "Prompt length when --token-ids is not given.")
    var promptTokens = 128

    @Option(help: "Greedy tokens generated after the prompt.")
    var newTokens = 64

    @Option(help: "Timed repetitions after one warm-up; the fastest is reported.")
    var repeats = 3

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard promptTokens >= 1, newTokens >= 1, repeats >= 1 else {
            throw ValidationError("--prompt-tokens, --new-tokens and --repeats must be at least 1")
        }
        if let tokenIds, tokenIds.split(separator: ",").contains(where: { Int($0.trimmingCharacters(in: .whitespaces)) == nil }) {
            throw ValidationError("--token-ids must be comma-separated integers")
        }
    }

    func run() throws {
        try runReportingErrors {
            let loaded = try ModelRegistry.load(path: options.model)
            let prompt = tokenIds.map { $0.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! } }
                ?? (0..<promptTokens).map { 1000 + $0 }
            let threads = options.threads ?? BLASThreads.current
            let r = try ForwardBenchmark.run(model: loaded.model, prompt: prompt, newTokens: newTokens, threads: threads, repeats: repeats)
            if json {
                print(try r.jsonString())
            } else {
                print(String(format: "cnl forward: %d prompt tokens in %.3f s, %d greedy tokens in %.3f s (%.1f tok/s), total %.3f s, %d BLAS threads",
                             r.promptTokens, r.prefillSeconds, r.newTokens, r.decodeSeconds, Double(r.newTokens) / r.decodeSeconds, r.totalSeconds, r.threads))
            }
        }
    }
}

struct BenchAttribution: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attribution",
        abstract: "Time the Eq. 7 attribution of real samples; minimal FLOPs against sgemm peak; memory per row budget.",
        discussion: """
            Defaults: GSM8K test records 1-3, prompt "Question: {question}\\nAnswer:", final answers (the \
            default `make run` job's template). Prints the wall time of the whole stream (clean passes and \
            rows; one untimed warm-up sample first), the FLOPs the engine counted and the minimal FLOPs of \
            the shortcut counted from the model's shapes, and sgemm rates measured in the same run. \
            scripts/bench-attribution.sh runs this beside the exact PyTorch comparator.
            """)

    @OptionGroup var options: ModelOptions

    @Option(help: "JSONL data file.")
    var data = ".assets/data/gsm8k/test.jsonl"

    @Option(help: "Prompt template.")
    var prompt = "Question: {question}\nAnswer:"

    @Option(help: "Answer template.")
    var answer = " {answer_final}"

    @Option(help: "Records skipped before the first sample.")
    var offset = 0

    @Option(help: "Samples.")
    var limit = 3

    @Option(help: "rows: --threads workers over row batches, one BLAS thread each (what cnl locate does); blas: one worker, --threads BLAS threads.")
    var threading = "rows"

    @Option(help: "Integration steps S (S + 1 points).")
    var steps = 19

    @Option(help: "paper, points, trapezoid or gauss-legendre.")
    var normalization = "paper"

    @Option(help: "Gauss–Legendre nodes K (with --normalization gauss-legendre).")
    var points: Int?

    @Option(help: "Rows per batch.")
    var rowBudget = 600

    @Option(help: "Comma-separated row budgets to measure memory on the first sample (empty: skip).")
    var budgets = "150,300,600,1200"

    @Option(help: "Write each sample's scores (float64 [L, J]) to DIR/sample-<i>.safetensors.")
    var scoresOut: String?

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard limit >= 1, offset >= 0 else { throw ValidationError("--limit must be at least 1 and --offset 0 or more") }
        guard AttributionBenchmark.Threading(rawValue: threading) != nil else { throw ValidationError("--threading must be rows or blas, got '\(threading)'") }
        guard let n = AttributionOptions.Normalization(rawValue: normalization) else {
            throw ValidationError("--normalization must be paper, points, trapezoid or gauss-legendre, got '\(normalization)'")
        }
        do { try AttributionOptions(steps: steps, normalization: n, rowBudget: rowBudget, points: points).validate() } catch {
            throw ValidationError(error.localizedDescription)
        }
        if budgets.split(separator: ",").contains(where: { (Int($0) ?? 0) < 1 }) { throw ValidationError("--budgets must be positive integers") }
    }

    func run() throws {
        try runReportingErrors {
            let loaded = try ModelRegistry.load(path: options.model)
            let tokenizer = try loaded.requireTokenizer()
            let opts = AttributionOptions(steps: steps, normalization: AttributionOptions.Normalization(rawValue: normalization)!,
                                          rowBudget: rowBudget, points: points)
            let spec = DatasetSpec(path: data, prompt: prompt, answer: answer, limit: limit, offset: offset)
            let r = try AttributionBenchmark.run(
                model: loaded.model, tokenizer: tokenizer, dataset: spec, threads: options.threads ?? 1,
                threading: AttributionBenchmark.Threading(rawValue: threading)!, options: opts,
                budgets: budgets.split(separator: ",").compactMap { Int($0) }, scoresOut: scoresOut,
                log: { if !json { print($0) } })
            if json {
                print(try r.jsonString())
            } else {
                for (k, v) in r.sgemmGFLOPs.sorted(by: { $0.key < $1.key }) { print(String(format: "sgemm %@: %.1f GFLOP/s", k, v)) }
                print(String(format: "attribution: %.2f s for %d samples, %d %@ thread%@; %.1f GFLOP/s counted, %.1f GFLOP/s minimal",
                             r.seconds, r.samples.count, r.threads, r.threading, r.threads == 1 ? "" : "s", r.gflopPerSecond, r.minimalGFLOPPerSecond))
            }
        }
    }
}

struct BenchEnhance: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enhance",
        abstract: "Time enhance training (forward + backward + Adam on the slices) over a training config's samples.",
        discussion: """
        One epoch of cnl enhance's training in one process: the --train config's samples in batches of \
        --batch-size, --neurons neurons drawn uniformly (seed --seed), their W_in rows trained with Adam. \
        Prints the seconds and training tokens/s (prompt + answer − 1 per sample). --write-plan FILE writes \
        the samples' token ids and the neurons as JSON, for scripts/oracle/bench_enhance_torch.py (the same \
        training in PyTorch: scripts/bench-enhance.sh runs both).
        """)

    @Option(help: "Training config (a run config; its gold answers are the targets).")
    var train: String

    @Option(help: "Neurons to train (drawn uniformly from all L·J).")
    var neurons = 100

    @Option(help: "Seed of the neuron draw.")
    var seed: UInt64 = 0

    @Option(help: "Samples per batch.")
    var batchSize = 8

    @Option(help: "BLAS threads.")
    var threads = 1

    @Option(help: "Write the samples' token ids and the neurons here (JSON).")
    var writePlan: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        try runReportingErrors {
            guard neurons >= 1, batchSize >= 1, threads >= 1 else { throw ValidationError("--neurons, --batch-size and --threads must be at least 1") }
            let r = try EnhanceBenchmark.run(trainConfig: train, neurons: neurons, seed: seed, batchSize: batchSize, threads: threads, writePlan: writePlan)
            if json { print(try r.jsonString()) } else {
                print(String(format: "cnl enhance training: %d samples, %d tokens, %d neurons (%d values): %.2f s, %.1f tokens/s, %d BLAS thread%@",
                             r.samples, r.tokens, r.neurons, r.values, r.seconds, Double(r.tokens) / r.seconds, r.threads, r.threads == 1 ? "" : "s"))
            }
        }
    }
}
