// The interface every architecture implements, and the shared forward driver over it.
import Foundation

/// Which rows of a forward pass need logits (the LM head is the largest matrix of a small
/// model: skipping it for prompt positions whose logits nobody reads saves most of prefill).
public enum LogitRows: Sendable { case all, last, none }

/// A decoder-only transformer: token embedding, L blocks, final norm, LM head.
/// Each architecture file (Llama.swift, GPT2.swift, GPTJ.swift) implements the pieces; the
/// driver below runs them in order and owns the KV-cache bookkeeping.
public protocol CausalLanguageModel: AnyObject {
    /// HF `model_type`.
    var modelType: String { get }
    var dimensions: ModelDimensions { get }
    var parameters: ParameterStore { get }
    /// Whether the LM head reuses the token embedding matrix.
    var tiedEmbeddings: Bool { get }

    /// x [T, D] = embedding of `tokens` at `positions`.
    func embed(_ tokens: [Int], positions: [Int], into x: UnsafeMutablePointer<Float>)
    /// Runs block `layer` on x [T, D] in place. Writes the block's keys/values for positions
    /// `cache.count ..< cache.count + T` into the cache; row t attends to positions ≤ its own.
    func block(_ layer: Int, x: UnsafeMutablePointer<Float>, positions: [Int], cache: KVCache)
    /// logits [R, V] of the final hidden rows h [R, D] (final norm, then LM head).
    func head(_ h: UnsafePointer<Float>, rows: Int, into logits: UnsafeMutablePointer<Float>)
}

extension CausalLanguageModel {
    public func makeCache(capacity: Int? = nil) -> KVCache {
        let d = dimensions
        return KVCache(layers: d.layers, kvHeads: d.kvHeads, headDim: d.headDim, capacity: capacity ?? d.contextLength)
    }

    /// Feeds `tokens` after what `cache` holds and returns the logits of `rows` ([R, V], row-major).
    public func forward(_ tokens: [Int], cache: KVCache, logits rows: LogitRows = .last) throws -> [Float] {
        let d = dimensions
        let t = tokens.count
        guard t > 0 else { return [] }
        for tok in tokens where tok < 0 || tok >= d.vocabulary {
            throw ModelError.tokenOutOfRange(token: tok, vocabulary: d.vocabulary)
        }
        let start = cache.count
        guard start + t <= min(cache.capacity, d.contextLength) else {
            throw ModelError.contextOverflow(needed: start + t, limit: min(cache.capacity, d.contextLength))
        }
        let positions = Array(start..<(start + t))
        var x = [Float](repeating: 0, count: t * d.width)
        x.withUnsafeMutableBufferPointer { xb in
            embed(tokens, positions: positions, into: xb.baseAddress!)
            for l in 0..<d.layers {
                block(l, x: xb.baseAddress!, positions: positions, cache: cache)
            }
        }
        cache.advance(by: t)
        let (first, count): (Int, Int)
        switch rows {
        case .all: (first, count) = (0, t)
        case .last: (first, count) = (t - 1, 1)
        case .none: return []
        }
        var logits = [Float](repeating: 0, count: count * d.vocabulary)
        x.withUnsafeBufferPointer { xb in
            logits.withUnsafeMutableBufferPointer { lb in
                head(xb.baseAddress! + first * d.width, rows: count, into: lb.baseAddress!)
            }
        }
        return logits
    }

    /// Greedy decoding (argmax, first index on ties, as torch.argmax): up to `maxNewTokens`
    /// tokens after `prompt`, stopping after `stopTokens` if any is produced.
    public func generateGreedy(prompt: [Int], maxNewTokens: Int, stopTokens: Set<Int> = [],
                               onToken: ((Int) -> Void)? = nil) throws -> [Int] {
        guard !prompt.isEmpty, maxNewTokens > 0 else { return [] }
        let cache = makeCache(capacity: min(dimensions.contextLength, prompt.count + maxNewTokens))
        var logits = try forward(prompt, cache: cache, logits: .last)
        var out: [Int] = []
        while true {
            let next = argmax(logits)
            out.append(next)
            onToken?(next)
            if out.count == maxNewTokens || stopTokens.contains(next) { break }
            logits = try forward([next], cache: cache, logits: .last)
        }
        return out
    }
}

/// Index of the largest value (the first on ties, NaN never wins).
public func argmax(_ v: [Float]) -> Int {
    var best = 0
    var bv = -Float.infinity
    for (i, x) in v.enumerated() where x > bv { best = i; bv = x }
    return best
}
