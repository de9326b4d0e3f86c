// `cnl bench forward`: prefill a prompt, then greedy-decode with the KV cache, timed.
import Foundation

public struct ForwardBenchmarkResult: Codable, Sendable {
    public var promptTokens: Int
    public var newTokens: Int
    public var threads: Int
    public var repeats: Int
    /// Best-of-repeats seconds for the prompt pass (logits of the last position only).
    public var prefillSeconds: Double
    /// Best-of-repeats seconds for the greedy tokens after the prompt (one cached pass each).
    public var decodeSeconds: Double
    public var generated: [Int]

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", newTokens = "new_tokens", threads, repeats
        case prefillSeconds = "prefill_seconds", decodeSeconds = "decode_seconds", generated
    }

    public var totalSeconds: Double { prefillSeconds + decodeSeconds }
}

public enum ForwardBenchmark {
    /// Runs `repeats` times (after one warm-up) and keeps the fastest of each phase.
    public static func run(model: TransformerModel, prompt: [Int], newTokens: Int, threads: Int, repeats: Int) throws -> ForwardBenchmarkResult {
        BLASThreads.set(threads)
        var bestPrefill = Double.infinity, bestDecode = Double.infinity
        var generated: [Int] = []
        for rep in 0...repeats {
            let cache = model.makeCache(capacity: prompt.count + newTokens)
            let t0 = Date()
            var logits = try model.forward(prompt, cache: cache, logits: .last)
            let t1 = Date()
            var out: [Int] = []
            for i in 0..<newTokens {
                let next = argmax(logits)
                out.append(next)
                if i + 1 < newTokens { logits = try model.forward([next], cache: cache, logits: .last) }
            }
            let t2 = Date()
            if rep > 0 {  // repetition 0 warms caches and page-faults the weights in
                bestPrefill = min(bestPrefill, t1.timeIntervalSince(t0))
                bestDecode = min(bestDecode, t2.timeIntervalSince(t1))
            }
            generated = out
        }
        return ForwardBenchmarkResult(promptTokens: prompt.count, newTokens: newTokens, threads: threads, repeats: repeats,
                                      prefillSeconds: bestPrefill, decodeSeconds: bestDecode, generated: generated)
    }
}
