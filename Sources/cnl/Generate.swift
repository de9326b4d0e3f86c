// `cnl generate MODEL --prompt … --max-tokens N`: greedy continuation with the KV cache.
import ArgumentParser
import Coordinator
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Greedy-decode a continuation of a prompt (argmax at every step, KV cache).")

    @OptionGroup var options: ModelOptions

    @Option(help: "The prompt text.")
    var prompt: String?

    @Option(help: "Take the prompt from the 'question' field of this GSM8K-style JSONL file …")
    var gsm8k: String?

    @Option(help: "… at this 0-based line.")
    var index = 0

    @Option(help: "Largest number of new tokens.")
    var maxTokens = 32

    @Flag(help: "Keep generating after an end-of-sequence token.")
    var ignoreEos = false

    @Flag(help: "Print JSON (prompt ids, generated ids and text, timing).")
    var json = false

    func validate() throws {
        guard (prompt == nil) != (gsm8k == nil) else { throw ValidationError("give exactly one of --prompt and --gsm8k") }
        guard maxTokens >= 1 && maxTokens <= 1_000_000 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
        guard index >= 0 else { throw ValidationError("--index must be ≥ 0") }
    }

    func run() throws {
        try runReportingErrors {
            options.applyThreads()
            let loaded = try ModelRegistry.load(path: options.model)
            let tokenizer = try loaded.requireTokenizer()
            let text = try prompt ?? GSM8KFile.question(path: gsm8k!, index: index)
            let ids = tokenizer.encode(text)
            let stop: Set<Int> = ignoreEos ? [] : Set([tokenizer.eosTokenID].compactMap { $0 })
            let start = Date()
            var streamed = ""
            var produced: [Int] = []
            if !json { print(text, terminator: ""); fflush(stdout) }
            let out = try loaded.model.generateGreedy(prompt: ids, maxNewTokens: maxTokens, stopTokens: stop) { tok in
                produced.append(tok)
                guard !json else { return }
                // Print the newly completed text (a token may end mid-character in byte-level BPE).
                let full = tokenizer.decode(produced)
                if full.hasPrefix(streamed), !full.hasSuffix("\u{FFFD}") {
                    print(full.dropFirst(streamed.count), terminator: "")
                    fflush(stdout)
                    streamed = full
                }
            }
            let seconds = Date().timeIntervalSince(start)
            let completion = tokenizer.decode(out)
            if json {
                struct Out: Encodable { let prompt: String; let prompt_ids: [Int]; let generated_ids: [Int]; let completion: String; let seconds: Double }
                print(try Out(prompt: text, prompt_ids: ids, generated_ids: out, completion: completion, seconds: seconds).jsonString())
            } else {
                if completion.count > streamed.count { print(completion.dropFirst(streamed.count), terminator: "") }
                print()
                fflush(stdout)
                FileHandle.standardError.write(Data(String(format: "[%d prompt tokens, %d generated in %.2f s]\n", ids.count, out.count, seconds).utf8))
            }
        }
    }
}
