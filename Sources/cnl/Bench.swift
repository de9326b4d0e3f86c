// `cnl bench …`: timings anyone can re-run (forward speed now; attribution speed later).
import ArgumentParser
import Coordinator
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks that print measured numbers.",
        subcommands: [BenchForward.self])
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
