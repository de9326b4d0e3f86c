// Evaluation passes (SPEC "Evaluating a capability"): one prompt pass whose KV cache serves
// teacher-forced log-probabilities of continuations and greedy decoding.
import Foundation

/// A prompt run once: its keys/values and the next-token logits of its last position. Every
/// continuation scored or generated after it rewinds the cache to the prompt, so options and
/// the gold answer never pay for the prompt twice.
public final class PrefilledPrompt {
    public let tokens: [Int]
    public let cache: KVCache
    /// logits [V] at the prompt's last position (they predict the first continuation token).
    public let lastLogits: [Float]

    init(tokens: [Int], cache: KVCache, lastLogits: [Float]) {
        self.tokens = tokens; self.cache = cache; self.lastLogits = lastLogits
    }
}

extension TransformerModel {
    /// Runs `prompt` in one batched pass into a cache that can hold `continuation` more tokens.
    public func prefill(_ prompt: [Int], continuation: Int) throws -> PrefilledPrompt {
        guard !prompt.isEmpty else { throw ModelError.contextOverflow(needed: 0, limit: dimensions.contextLength) }
        let needed = prompt.count + continuation
        guard needed <= dimensions.contextLength else {
            throw ModelError.contextOverflow(needed: needed, limit: dimensions.contextLength)
        }
        let cache = makeCache(capacity: needed)
        let logits = try forward(prompt, cache: cache, logits: .last)
        return PrefilledPrompt(tokens: prompt, cache: cache, lastLogits: logits)
    }

    /// log P(c_m | prompt ⊕ c_<m) for m = 1..Y, teacher-forced: the first from the prompt's last
    /// logits, the others from one pass over c_1..c_{Y−1} (the last token is only a target).
    public func continuationLogProbabilities(_ continuation: [Int], after prompt: PrefilledPrompt) throws -> [Double] {
        guard !continuation.isEmpty else { return [] }
        let v = dimensions.vocabulary
        for tok in continuation where tok < 0 || tok >= v { throw ModelError.tokenOutOfRange(token: tok, vocabulary: v) }
        prompt.cache.truncate(to: prompt.tokens.count)
        defer { prompt.cache.truncate(to: prompt.tokens.count) }
        var out = [logProbability(of: continuation[0], in: prompt.lastLogits, offset: 0)]
        if continuation.count > 1 {
            let logits = try forward(Array(continuation.dropLast()), cache: prompt.cache, logits: .all)
            for m in 1..<continuation.count {
                out.append(logProbability(of: continuation[m], in: logits, offset: (m - 1) * v))
            }
        }
        return out
    }

    /// Greedy decoding after the prompt (argmax, the first index on ties, as torch.argmax): up to
    /// `maxNewTokens` tokens, stopping after a token for which `stop` holds (it is kept).
    public func greedyContinuation(after prompt: PrefilledPrompt, maxNewTokens: Int, stop: (Int) -> Bool) throws -> [Int] {
        prompt.cache.truncate(to: prompt.tokens.count)
        defer { prompt.cache.truncate(to: prompt.tokens.count) }
        guard maxNewTokens > 0 else { return [] }
        var out: [Int] = []
        var logits = prompt.lastLogits
        while true {
            let next = argmax(logits)
            out.append(next)
            if out.count == maxNewTokens || stop(next) { break }
            logits = try forward([next], cache: prompt.cache, logits: .last)
        }
        return out
    }

    /// log softmax(logits[offset ..< offset+V])[token] in Double: the normalizer over a 49,152-word
    /// vocabulary summed in Float would drift by ~1e-4 relative (see softmaxInPlace).
    func logProbability(of token: Int, in logits: [Float], offset: Int) -> Double {
        let v = dimensions.vocabulary
        return logits.withUnsafeBufferPointer { lb in
            let row = lb.baseAddress! + offset
            var m = -Float.infinity
            for i in 0..<v { m = max(m, row[i]) }
            var sum = 0.0
            let dm = Double(m)
            for i in 0..<v { sum += Foundation.exp(Double(row[i]) - dm) }
            return Double(row[token]) - dm - Foundation.log(sum)
        }
    }
}
