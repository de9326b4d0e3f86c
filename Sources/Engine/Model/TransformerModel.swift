// A decoder-only transformer: embedding, L blocks, final norm, LM head (every architecture).
import Foundation

/// Which rows of a forward pass need logits (the LM head is the largest matrix of a small
/// model: skipping it for prompt positions whose logits nobody reads saves most of prefill).
/// Which rows of a pass get logits: all, the last, none, or the last n (`tail`).
public enum LogitRows: Sendable { case all, last, none, tail(Int) }

/// The one model type. Architecture files (Llama.swift, GPT2.swift, GPTJ.swift) read their
/// config and checkpoint names and build it; everything that runs is here and in DecoderBlock.
public final class TransformerModel {
    /// HF `model_type`.
    public let modelType: String
    public let dimensions: ModelDimensions
    public let parameters: ParameterStore
    /// Whether the LM head reuses the token embedding matrix.
    public let tiedEmbeddings: Bool
    /// The layers (and ends) this instance holds: the whole model, or one pipeline stage.
    public let slice: ModelSlice
    /// The blocks of `slice.layers`, in order (all L for a whole model): `block(l)` by layer.
    public let blocks: [DecoderBlock]
    public let rotary: RotaryEmbedding?
    /// The second rotary of a model whose sliding-window layers use another base (Gemma 3).
    public let localRotary: RotaryEmbedding?
    /// The factor on embedding rows (Gemma: √D, rounded to float32 as HF's buffer); nil: 1.
    let embeddingScale: Float?
    let tokenEmbedding: UnsafeMutablePointer<Float>?      // [V, D] (nil on a stage that needs none)
    let positionEmbedding: UnsafeMutablePointer<Float>?   // [T max, D] (GPT-2)
    private let headParts: (norm: Norm, lmHead: Linear)?

    init(modelType: String, dimensions: ModelDimensions, parameters: ParameterStore, tiedEmbeddings: Bool, slice: ModelSlice,
         blocks: [DecoderBlock], rotary: RotaryEmbedding?, tokenEmbedding: UnsafeMutablePointer<Float>?,
         positionEmbedding: UnsafeMutablePointer<Float>?, finalNorm: Norm?, lmHead: Linear?,
         localRotary: RotaryEmbedding? = nil, embeddingScale: Float? = nil) {
        precondition(blocks.count == slice.layers.count, "internal: \(blocks.count) blocks for layers \(slice.layers)")
        self.modelType = modelType; self.dimensions = dimensions; self.parameters = parameters
        self.tiedEmbeddings = tiedEmbeddings; self.slice = slice; self.blocks = blocks; self.rotary = rotary
        self.tokenEmbedding = tokenEmbedding; self.positionEmbedding = positionEmbedding
        self.localRotary = localRotary; self.embeddingScale = embeddingScale
        if let finalNorm, let lmHead { headParts = (finalNorm, lmHead) } else { headParts = nil }
    }

    /// The block of layer `layer` (a layer of `slice`).
    public func block(_ layer: Int) -> DecoderBlock { blocks[layer - slice.layers.lowerBound] }

    /// The final norm (the last stage, or a whole model).
    public var finalNorm: Norm {
        guard let headParts else { preconditionFailure("internal: stage \(slice.stage) holds layers \(slice.layers), not the final norm") }
        return headParts.norm
    }

    /// The LM head (the last stage, or a whole model).
    public var lmHead: Linear {
        guard let headParts else { preconditionFailure("internal: stage \(slice.stage) holds layers \(slice.layers), not the LM head") }
        return headParts.lmHead
    }

    /// A cache for this instance's layers.
    public func makeCache(capacity: Int? = nil) -> KVCache {
        let d = dimensions
        return KVCache(layers: slice.layers, kvHeads: d.kvHeads, headDim: d.headDim, capacity: min(capacity ?? d.contextLength, d.contextLength))
    }

    // MARK: - Forward

    /// x [T, D] = embedding of `tokens` at `positions`.
    public func embed(_ tokens: [Int], positions: [Int], into x: UnsafeMutablePointer<Float>) {
        guard let tokenEmbedding, slice.holdsEmbedding else { preconditionFailure("internal: stage \(slice.stage) does not hold the embeddings") }
        let d = dimensions.width
        for (t, tok) in tokens.enumerated() {
            let row = x + t * d
            row.update(from: tokenEmbedding + tok * d, count: d)
            if let s = embeddingScale { for i in 0..<d { row[i] *= s } }
            if let pe = positionEmbedding {
                let p = pe + positions[t] * d
                for i in 0..<d { row[i] += p[i] }
            }
        }
    }

    /// Feeds `tokens` after what `cache` holds and returns the logits of `rows` ([R, V], row-major).
    /// `inspect(layer, tape)` (if given) sees every block's tape right after it ran: the
    /// attribution reads the clean activations it needs from there.
    public func forward(_ tokens: [Int], cache: KVCache, logits rows: LogitRows = .last,
                        inspect: ((Int, BlockTape) -> Void)? = nil) throws -> [Float] {
        precondition(slice.isFull, "internal: forward needs the whole model, this is stage \(slice.stage)")
        let d = dimensions
        let t = tokens.count
        guard t > 0 else { return [] }
        for tok in tokens where tok < 0 || tok >= d.vocabulary {
            throw ModelError.tokenOutOfRange(token: tok, vocabulary: d.vocabulary)
        }
        let start = cache.count
        guard start + t <= cache.capacity else {
            throw ModelError.contextOverflow(needed: start + t, limit: cache.capacity)
        }
        let positions = Array(start..<(start + t))
        let rotaryRows = RotaryRows(self, positions: positions)
        let x = FloatBuffer(count: t * d.width)
        let tape = BlockTape()
        embed(tokens, positions: positions, into: x.pointer)
        forwardLayers(x.pointer, rows: t, positions: positions, rotaryRows: rotaryRows, cache: cache, tape: tape, inspect: inspect)
        cache.advance(by: t)
        let (first, count): (Int, Int)
        switch rows {
        case .all: (first, count) = (0, t)
        case .last: (first, count) = (t - 1, 1)
        case let .tail(n): (first, count) = (t - min(n, t), min(n, t))
        case .none: return []
        }
        return logits(ofHidden: x.pointer + first * d.width, rows: count)
    }

    /// Runs rows x [T, D] at `positions` through this instance's blocks, writing their keys and
    /// values into `cache` (the caller advances it): a whole model's pass, or one stage's part
    /// of a pipelined clean pass.
    public func forwardLayers(_ x: UnsafeMutablePointer<Float>, rows t: Int, positions: [Int], rotaryRows: RotaryRows, cache: KVCache,
                              tape: BlockTape, inspect: ((Int, BlockTape) -> Void)? = nil) {
        for l in slice.layers {
            block(l).forward(x, rows: t, positions: positions, rotaryRows: rotaryRows,
                             keys: cache.keys(layer: l), values: cache.values(layer: l), writeCache: true, tape: tape)
            inspect?(l, tape)
        }
    }

    /// logits [R, V] of final hidden rows [R, D] (final norm, then the LM head).
    public func logits(ofHidden h: UnsafePointer<Float>, rows: Int) -> [Float] {
        let d = dimensions
        var logits = [Float](repeating: 0, count: rows * d.vocabulary)
        let normed = FloatBuffer(count: rows * d.width), stats = FloatBuffer(count: 2 * rows)
        logits.withUnsafeMutableBufferPointer { lb in
            head(h, rows: rows, normed: normed.pointer, stats: stats.pointer, into: lb.baseAddress!)
        }
        return logits
    }

    /// logits [R, V] of final hidden rows h [R, D]: final norm (normed [R, D], stats [R, 2]
    /// kept for the backward), then the LM head.
    public func head(_ h: UnsafePointer<Float>, rows: Int, normed: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>,
                     into logits: UnsafeMutablePointer<Float>) {
        finalNorm.forward(h, rows: rows, into: normed, stats: stats)
        lmHead.forward(normed, rows: rows, into: logits)
    }

    /// dh [R, D] from dlogits [R, V]: backward of `head` through the LM head and the final norm.
    public func headBackward(_ dLogits: UnsafePointer<Float>, h: UnsafePointer<Float>, stats: UnsafePointer<Float>, rows: Int,
                             scratch: UnsafeMutablePointer<Float>, into dh: UnsafeMutablePointer<Float>) {
        lmHead.backwardInput(dLogits, rows: rows, into: scratch)
        finalNorm.backward(scratch, x: h, stats: stats, rows: rows, into: dh, accumulate: false)
    }

    /// Greedy decoding (argmax, first index on ties, as torch.argmax): up to `maxNewTokens`
    /// tokens after `prompt`, stopping after `stopTokens` if any is produced.
    public func generateGreedy(prompt: [Int], maxNewTokens: Int, stopTokens: Set<Int> = [],
                               onToken: ((Int) -> Void)? = nil) throws -> [Int] {
        guard !prompt.isEmpty, maxNewTokens > 0 else { return [] }
        let cache = makeCache(capacity: prompt.count + maxNewTokens)
        guard prompt.count + maxNewTokens <= cache.capacity else {
            throw ModelError.contextOverflow(needed: prompt.count + maxNewTokens, limit: cache.capacity)
        }
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
public func argmax(_ v: [Float]) -> Int { v.withUnsafeBufferPointer(argmax) }

/// `argmax` of a buffer (a row of a logits matrix).
func argmax(_ v: UnsafeBufferPointer<Float>) -> Int {
    var best = 0
    var bv = -Float.infinity
    for (i, x) in v.enumerated() where x > bv { best = i; bv = x }
    return best
}
