// `cnl bench …`: timings anyone can re-run (forward speed now; attribution speed later).
import ArgumentParser
import Coordinator
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print measured numbers.",
        subcommands: [BenchForward.self, BenchAttribution.self])
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
        abstract: "Time the Eq. 7 attribution of GSM8K samples; FLOP rate against sgemm peak; memory per row budget.")

    @OptionGroup var options: ModelOptions

    @Option(help: "GSM8K JSONL file (question/answer fields).")
    var gsm8k = ".assets/data/gsm8k/test.jsonl"

    @Option(help: "Samples attributed with the final answer (after ####).")
    var finals = 2

    @Option(help: "Samples attributed with the full worked answer (after the final-answer ones).")
    var fulls = 2

    @Option(help: "Integration steps S (S + 1 points).")
    var steps = 19

    @Option(help: "Rows per batch.")
    var rowBudget = 600

    @Option(help: "Comma-separated row budgets to measure memory on the first sample (empty: skip).")
    var budgets = "150,300,600,1200"

    @Flag(help: "Print JSON.")
    var json = false

    func validate() throws {
        guard finals >= 0, fulls >= 0, finals + fulls >= 1 else { throw ValidationError("--finals + --fulls must be at least 1") }
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard rowBudget >= 1 else { throw ValidationError("--row-budget must be at least 1") }
        if budgets.split(separator: ",").contains(where: { (Int($0) ?? 0) < 1 }) { throw ValidationError("--budgets must be positive integers") }
    }

    func run() throws {
        try runReportingErrors {
            let loaded = try ModelRegistry.load(path: options.model)
            let tokenizer = try loaded.requireTokenizer()
            let opts = AttributionOptions(steps: steps, rowBudget: rowBudget)
            let r = try AttributionBenchmark.run(
                model: loaded.model, tokenizer: tokenizer, gsm8k: gsm8k, finals: finals, fulls: fulls,
                threads: options.threads ?? 1, options: opts, budgets: budgets.split(separator: ",").compactMap { Int($0) },
                log: { if !json { print($0) } })
            if json {
                print(try r.jsonString())
            } else {
                for (k, v) in r.sgemmPeakGFLOPs.sorted(by: { $0.key < $1.key }) { print(String(format: "sgemm %@: %.1f GFLOP/s", k, v)) }
                let rate = r.samples.reduce(0) { $0 + $1.gflop } / r.samples.reduce(0) { $0 + $1.seconds }
                let peak = r.sgemmPeakGFLOPs.values.max() ?? 1
                print(String(format: "attribution: %.1f GFLOP/s over all samples = %.0f%% of the best sgemm rate above", rate, 100 * rate / peak))
            }
        }
    }
}
