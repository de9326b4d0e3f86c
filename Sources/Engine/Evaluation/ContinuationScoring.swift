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

// MARK: - Batched greedy decoding

extension TransformerModel {
    /// One decoding step of R sequences at once: `tokens[r]` is fed to `prompts[r]`'s cache
    /// after what it holds. Returns logits [R, V]. Decoding one sequence reads every weight once
    /// per token (memory-bound: ~40 ms for SmolLM2 on one core); R sequences share that read.
    func decodeStep(_ tokens: [Int], caches: [KVCache]) throws -> [Float] {
        let d = dimensions
        let R = tokens.count
        for tok in tokens where tok < 0 || tok >= d.vocabulary { throw ModelError.tokenOutOfRange(token: tok, vocabulary: d.vocabulary) }
        for c in caches where c.count + 1 > c.capacity { throw ModelError.contextOverflow(needed: c.count + 1, limit: c.capacity) }
        let positions = caches.map(\.count)
        let rotaryRows = RotaryRows(self, positions: positions)
        let x = FloatBuffer(count: R * d.width)
        let tape = BlockTape()
        embed(tokens, positions: positions, into: x.pointer)
        for (l, block) in blocks.enumerated() {
            block.forwardDecoding(x.pointer, rows: R, positions: positions, rotaryRows: rotaryRows,
                                  caches: caches.map { ($0.keys(layer: l), $0.values(layer: l)) }, tape: tape)
        }
        for c in caches { c.advance(by: 1) }
        return logits(ofHidden: x.pointer, rows: R)
    }

    /// `greedyContinuation` for several prompts in lockstep: each step decodes every sequence
    /// still running in one batch (a sequence leaves after its stop token or `maxNewTokens`).
    /// The batch composition changes the float rounding (sgemm over R rows instead of sgemv),
    /// so callers that promise the same bits for any rank count form the groups independently
    /// of the ranks.
    public func greedyContinuations(after prompts: [PrefilledPrompt], maxNewTokens: Int, stop: (Int) -> Bool) throws -> [[Int]] {
        for p in prompts { p.cache.truncate(to: p.tokens.count) }
        defer { for p in prompts { p.cache.truncate(to: p.tokens.count) } }
        guard maxNewTokens > 0 else { return prompts.map { _ in [] } }
        let v = dimensions.vocabulary
        var out = prompts.map { [argmax($0.lastLogits)] }
        var running = prompts.indices.filter { out[$0].count < maxNewTokens && !stop(out[$0][0]) }
        while !running.isEmpty {
            let logits = try decodeStep(running.map { out[$0].last! }, caches: running.map { prompts[$0].cache })
            var still: [Int] = []
            for (k, i) in running.enumerated() {
                let next = logits.withUnsafeBufferPointer { lb in argmax(UnsafeBufferPointer(rebasing: lb[(k * v)..<((k + 1) * v)])) }
                out[i].append(next)
                if out[i].count < maxNewTokens && !stop(next) { still.append(i) }
            }
            running = still
        }
        return out
    }
}
