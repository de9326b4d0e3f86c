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
        try prefill([prompt], continuation: [continuation])[0]
    }

    /// Several prompts in one pass (`forward(segments:)`): prompt i into its own cache, which
    /// can hold `continuation[i]` more tokens. Short prompts batched together keep the matrix
    /// products tall (a 70-token GSM8K prompt alone repacks every weight for 70 rows).
    public func prefill(_ prompts: [[Int]], continuation: [Int]) throws -> [PrefilledPrompt] {
        precondition(prompts.count == continuation.count, "internal: one continuation length per prompt")
        var caches: [KVCache] = []
        for (prompt, extra) in zip(prompts, continuation) {
            guard !prompt.isEmpty else { throw ModelError.contextOverflow(needed: 0, limit: dimensions.contextLength) }
            let needed = prompt.count + extra
            guard needed <= dimensions.contextLength else {
                throw ModelError.contextOverflow(needed: needed, limit: dimensions.contextLength)
            }
            caches.append(makeCache(capacity: needed))
        }
        let logits = try forward(segments: prompts, caches: caches, logits: .last)
        return prompts.indices.map { PrefilledPrompt(tokens: prompts[$0], cache: caches[$0], lastLogits: logits[$0]) }
    }

    /// log P(c_m | prompt ⊕ c_<m) for m = 1..Y, teacher-forced: the first from the prompt's last
    /// logits, the others from one pass over c_1..c_{Y−1} (the last token is only a target).
    public func continuationLogProbabilities(_ continuation: [Int], after prompt: PrefilledPrompt) throws -> [Double] {
        try continuationLogProbabilities([continuation], after: [prompt])[0]
    }

    /// `continuationLogProbabilities` of continuation i after prompt i, every continuation in
    /// one pass. The prompts must be distinct (each cache takes one continuation at a time).
    public func continuationLogProbabilities(_ continuations: [[Int]], after prompts: [PrefilledPrompt]) throws -> [[Double]] {
        precondition(continuations.count == prompts.count, "internal: one prompt per continuation")
        let v = dimensions.vocabulary
        for c in continuations { for tok in c where tok < 0 || tok >= v { throw ModelError.tokenOutOfRange(token: tok, vocabulary: v) } }
        for p in prompts { p.cache.truncate(to: p.tokens.count) }
        defer { for p in prompts { p.cache.truncate(to: p.tokens.count) } }
        let logits = try forward(segments: continuations.map { Array($0.dropLast()) }, caches: prompts.map(\.cache), logits: .all)
        return continuations.indices.map { i in
            let c = continuations[i]
            guard !c.isEmpty else { return [] }
            var out = [logProbability(of: c[0], in: prompts[i].lastLogits, offset: 0)]
            for m in 1..<c.count { out.append(logProbability(of: c[m], in: logits[i], offset: (m - 1) * v)) }
            return out
        }
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
    /// Feeds segment s after what `caches[s]` holds, every segment in one batched pass: each
    /// matrix product reads the weights once for all rows of all segments (one decoding step of
    /// R sequences, or R prompts); only attention runs segment by segment, against its own
    /// cache. Returns per segment the logits of its last row ([V], `.last`) or of every row
    /// ([T_s, V], `.all`); an empty segment gives []. Decoding one sequence alone reads every
    /// weight per token (memory-bound: ~40 ms for SmolLM2 on one core); R sequences share it.
    /// The batch composition can change the float rounding (sgemm over R rows instead of
    /// sgemv), so callers that promise the same bits for any rank count form the batches
    /// independently of the ranks.
    func forward(segments: [[Int]], caches: [KVCache], logits rows: LogitRows) throws -> [[Float]] {
        precondition(slice.isFull, "internal: forward needs the whole model, this is stage \(slice.stage)")
        precondition(segments.count == caches.count, "internal: one cache per segment")
        let d = dimensions
        var tokens: [Int] = [], positions: [Int] = [], ranges: [Range<Int>] = []
        for (seg, cache) in zip(segments, caches) {
            for tok in seg where tok < 0 || tok >= d.vocabulary { throw ModelError.tokenOutOfRange(token: tok, vocabulary: d.vocabulary) }
            guard cache.count + seg.count <= cache.capacity else {
                throw ModelError.contextOverflow(needed: cache.count + seg.count, limit: cache.capacity)
            }
            ranges.append(tokens.count..<(tokens.count + seg.count))
            tokens += seg
            positions += cache.count..<(cache.count + seg.count)
        }
        let R = tokens.count
        guard R > 0 else { return segments.map { _ in [] } }
        let rotaryRows = RotaryRows(self, positions: positions)
        let x = FloatBuffer(count: R * d.width)
        let tape = BlockTape()
        embed(tokens, positions: positions, into: x.pointer)
        for (l, block) in blocks.enumerated() {
            block.forwardSegments(x.pointer, segments: ranges, positions: positions, rotaryRows: rotaryRows,
                                  caches: caches.map { ($0.keys(layer: l), $0.values(layer: l)) }, tape: tape)
        }
        for (c, seg) in zip(caches, segments) { c.advance(by: seg.count) }
        let v = d.vocabulary
        switch rows {
        case .all:
            let all = logits(ofHidden: x.pointer, rows: R)
            return ranges.map { Array(all[($0.lowerBound * v)..<($0.upperBound * v)]) }
        case .last:
            // The last row of every non-empty segment, gathered for one head product.
            let live = ranges.indices.filter { !ranges[$0].isEmpty }
            let last = FloatBuffer(count: live.count * d.width)
            for (k, s) in live.enumerated() { (last.pointer + k * d.width).update(from: x.pointer + (ranges[s].upperBound - 1) * d.width, count: d.width) }
            let head = logits(ofHidden: last.pointer, rows: live.count)
            var out = segments.map { _ in [Float]() }
            for (k, s) in live.enumerated() { out[s] = Array(head[(k * v)..<((k + 1) * v)]) }
            return out
        default:
            preconditionFailure("internal: forward(segments:) gives the last or every row's logits")
        }
    }

    /// Greedy decoding after each prompt (argmax, the first index on ties, as torch.argmax), the
    /// prompts in lockstep: each step decodes every sequence still running in one batch; a
    /// sequence leaves after `maxNewTokens` tokens or after a token for which `stop` holds (it
    /// is kept).
    /// The batch composition changes the float rounding (sgemm over R rows instead of sgemv),
    /// so callers that promise the same bits for any rank count form the groups independently
    /// of the ranks.
    public func greedyContinuations(after prompts: [PrefilledPrompt], maxNewTokens: Int, stop: (Int) -> Bool) throws -> [[Int]] {
        for p in prompts { p.cache.truncate(to: p.tokens.count) }
        defer { for p in prompts { p.cache.truncate(to: p.tokens.count) } }
        guard maxNewTokens > 0 else { return prompts.map { _ in [] } }
        var out = prompts.map { [argmax($0.lastLogits)] }
        var running = prompts.indices.filter { out[$0].count < maxNewTokens && !stop(out[$0][0]) }
        while !running.isEmpty {
            let logits = try forward(segments: running.map { [out[$0].last!] }, caches: running.map { prompts[$0].cache }, logits: .last)
            var still: [Int] = []
            for (k, i) in running.enumerated() {
                let next = argmax(logits[k])
                out[i].append(next)
                if out[i].count < maxNewTokens && !stop(next) { still.append(i) }
            }
            running = still
        }
        return out
    }
}
