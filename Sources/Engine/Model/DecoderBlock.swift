// One transformer block for every architecture: forward over rows with a tape, and its backward.
import Foundation

/// A block's normalization: RMSNorm (Llama) or LayerNorm (GPT-2, GPT-J). Two stats per row.
public enum Norm {
    case rms(RMSNorm)
    case layer(LayerNorm)

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>) {
        switch self {
        case let .rms(n):
            n.forward(x, rows: rows, into: y, inverseRMS: stats)
        case let .layer(n):
            n.forward(x, rows: rows, into: y, stats: stats)
        }
    }

    public func backward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, stats: UnsafePointer<Float>, rows: Int,
                         into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        switch self {
        case let .rms(n): n.backward(dy, x: x, inverseRMS: stats, rows: rows, into: dx, accumulate: accumulate)
        case let .layer(n): n.backward(dy, x: x, stats: stats, rows: rows, into: dx, accumulate: accumulate)
        }
    }
}

/// The pieces of one decoder block. With `postAttentionNorm` the block is sequential (GPT-2,
/// Llama: the FFN reads norm₂(x + attention)); without it, parallel (GPT-J: attention and FFN
/// both read norm₁(x) and both add to x). `ffnIn`'s output is ω, the neurons SPEC hooks:
/// Llama's gate_proj, GPT-2's c_fc, GPT-J's fc_in, Gemma's gate_proj. `ffnUp` is the gated
/// FFNs' unscaled up_proj. Gemma 3 adds the optional pieces at the end: RMSNorm of each head's
/// q and k before rotary, and a norm of the attention output and of the FFN output before each
/// is added to the residual stream (its "sandwich" norms).
public struct DecoderBlock {
    public let inputNorm: Norm
    public let q, k, v, o: Linear            // q [H·E, D], k/v [G·E, D], o [D, H·E]
    public let rotary: RotaryEmbedding?
    public let attention: CausalAttention
    public let postAttentionNorm: Norm?
    public let ffnIn: Linear                 // [J, D] → ω
    public let ffnUp: Linear?                // [J, D]
    public let ffnDown: Linear               // [D, J]
    public let activation: Activation
    public var queryNorm: RMSNorm? = nil     // [E], on each head of q (Gemma 3)
    public var keyNorm: RMSNorm? = nil       // [E], on each head of k
    public var attentionOutputNorm: Norm? = nil   // o(attention) → norm → + x
    public var ffnOutputNorm: Norm? = nil         // down(…) → norm → + r
    /// Which rotary table of a pass this block reads: Gemma 3's sliding-window layers rotate
    /// with their own (local) base.
    public var rotaryTable: RotaryRows.Table = .main

    var width: Int { ffnDown.outFeatures }               // D
    var ffnWidth: Int { ffnIn.outFeatures }              // J
    public var queryWidth: Int { q.outFeatures }         // H·E
    public var kvWidth: Int { k.outFeatures }            // G·E
}

/// Cos/sin rows for a list of positions, shared by every block of one pass (and a second set
/// for the blocks that rotate with the local base: Gemma 3's sliding-window layers).
public struct RotaryRows {
    public enum Table: Sendable { case main, local }
    public let cos: [Float]     // [R, P/2]
    public let sin: [Float]     // [R, P/2]
    public let half: Int        // P/2
    let localCos: [Float]       // [R, P/2] (empty without a local rotary)
    let localSin: [Float]

    public init(_ rotary: RotaryEmbedding?, local: RotaryEmbedding? = nil, positions: [Int]) {
        if let rotary {
            (cos, sin) = rotary.table(positions: positions)
            half = rotary.rotaryDim / 2
        } else {
            (cos, sin, half) = ([], [], 0)
        }
        if let local {
            precondition(local.rotaryDim / 2 == half, "internal: the local rotary has another width")
            (localCos, localSin) = local.table(positions: positions)
        } else {
            (localCos, localSin) = ([], [])
        }
    }

    /// The rows of a model's pass (its main and, if it has one, local rotary).
    public init(_ model: TransformerModel, positions: [Int]) {
        self.init(model.rotary, local: model.localRotary, positions: positions)
    }

    /// Applies `body` to the cos and sin tables of `table`.
    func with<T>(_ table: Table, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> T) -> T {
        let (c, s) = table == .local ? (localCos, localSin) : (cos, sin)
        precondition(!c.isEmpty || cos.isEmpty, "internal: a block asks for the local rotary of a pass that has none")
        return c.withUnsafeBufferPointer { cb in s.withUnsafeBufferPointer { sb in body(cb.baseAddress!, sb.baseAddress!) } }
    }
}

/// Everything a block's backward reads, for R rows (shapes in the letters of ModelDimensions).
/// Also the forward's workspace: a prompt pass reuses one tape for every layer.
public final class BlockTape {
    public private(set) var rows = 0
    let xIn = FloatBuffer()        // [R, D]   block input (norm₁ backward)
    let stats1 = FloatBuffer()     // [R, 2]
    // normed, attended, ffnInput and hidden are forward scratch (backward needs only the others), so
    // the tapes of a row batch share one set of them: `shareForwardScratch`.
    private(set) var normed = FloatBuffer()     // [R, D]   norm₁(x); the FFN input b of parallel blocks
    let q = FloatBuffer()          // [R, H·E] after rotary
    let k = FloatBuffer()          // [R, G·E] after rotary (the rows' own keys)
    let v = FloatBuffer()          // [R, G·E]
    var attention = CausalAttention.Tape()
    private(set) var attended = FloatBuffer()   // [R, H·E] attention output before o
    let residual = FloatBuffer()   // [R, D]   r = x + o(attention)
    let stats2 = FloatBuffer()     // [R, 2]
    private(set) var ffnInput = FloatBuffer()   // [R, D]   b = norm₂(r) (sequential blocks)
    let omega = FloatBuffer()      // [R, J]   ω, before the activation
    let up = FloatBuffer()         // [R, J]   u (SwiGLU)
    private(set) var hidden = FloatBuffer()     // [R, J]   act(ω) ⊙ u
    private(set) var outputNormed = FloatBuffer()   // [R, D] an output norm's result (Gemma 3)
    // Gemma 3's extra norms (sized only for blocks that have them).
    let qRaw = FloatBuffer()       // [R, H·E] q before its per-head norm
    let kRaw = FloatBuffer()       // [R, G·E]
    let qStats = FloatBuffer()     // [R·H] 1/rms per head
    let kStats = FloatBuffer()     // [R·G]
    let attentionOut = FloatBuffer()   // [R, D] o(attention), before its norm
    let stats3 = FloatBuffer()         // [R, 2]
    let ffnOut = FloatBuffer()         // [R, D] down(…), before its norm
    let stats4 = FloatBuffer()         // [R, 2]

    public init() {}

    /// Uses `other`'s forward scratch (normed, attended, ffnInput, hidden) instead of its own: tapes
    /// filled one after another and read back only by `backward` need one copy.
    public func shareForwardScratch(with other: BlockTape) {
        normed = other.normed; attended = other.attended; ffnInput = other.ffnInput; hidden = other.hidden
        outputNormed = other.outputNormed
    }

    func prepare(rows r: Int, block b: DecoderBlock) {
        rows = r
        xIn.ensure(r * b.width); stats1.ensure(2 * r); normed.ensure(r * b.width)
        q.ensure(r * b.queryWidth); k.ensure(r * b.kvWidth); v.ensure(r * b.kvWidth)
        attended.ensure(r * b.queryWidth); residual.ensure(r * b.width); stats2.ensure(2 * r)
        ffnInput.ensure(r * b.width); omega.ensure(r * b.ffnWidth); hidden.ensure(r * b.ffnWidth)
        if b.ffnUp != nil { up.ensure(r * b.ffnWidth) }
        if b.queryNorm != nil { qRaw.ensure(r * b.queryWidth); qStats.ensure(r * b.attention.heads) }
        if b.keyNorm != nil { kRaw.ensure(r * b.kvWidth); kStats.ensure(r * b.attention.kvHeads) }
        if b.attentionOutputNorm != nil { attentionOut.ensure(r * b.width); stats3.ensure(2 * r) }
        if b.attentionOutputNorm != nil || b.ffnOutputNorm != nil { outputNormed.ensure(r * b.width) }
        if b.ffnOutputNorm != nil { ffnOut.ensure(r * b.width); stats4.ensure(2 * r) }
    }

    /// Bytes held, for memory reports (`ownOnly`: without the forward scratch, which may be shared).
    public func bytes(ownOnly: Bool = false) -> Int {
        let shared = ownOnly ? [] : [normed, attended, ffnInput, hidden, outputNormed]
        let gemma = [qRaw, kRaw, qStats, kStats, attentionOut, stats3, ffnOut, stats4]
        return 4 * (([xIn, stats1, q, k, v, residual, stats2, omega, up] + gemma + shared).reduce(0) { $0 + $1.capacity }
                    + attention.probabilities.count)
    }
}

/// Scratch for the backward of a block (reused across layers).
public final class BlockGradients {
    let dHidden = FloatBuffer()    // [R, J]
    let dOmega = FloatBuffer()     // [R, J]
    let dUp = FloatBuffer()        // [R, J]
    let dFFNInput = FloatBuffer()  // [R, D]
    let dResidual = FloatBuffer()  // [R, D]
    let dAttended = FloatBuffer()  // [R, H·E]
    let dq = FloatBuffer()         // [R, H·E]
    let dk = FloatBuffer()         // [R, G·E]
    let dv = FloatBuffer()         // [R, G·E]
    let dNormed = FloatBuffer()    // [R, D]
    let dOutput = FloatBuffer()    // [R, D] gradient before an output norm (Gemma 3)

    public init() {}

    func prepare(rows r: Int, block b: DecoderBlock) {
        dHidden.ensure(r * b.ffnWidth); dOmega.ensure(r * b.ffnWidth); dUp.ensure(r * b.ffnWidth)
        dFFNInput.ensure(r * b.width); dResidual.ensure(r * b.width); dAttended.ensure(r * b.queryWidth)
        dq.ensure(r * b.queryWidth); dk.ensure(r * b.kvWidth); dv.ensure(r * b.kvWidth); dNormed.ensure(r * b.width)
        if b.attentionOutputNorm != nil || b.ffnOutputNorm != nil { dOutput.ensure(r * b.width) }
    }
}

extension DecoderBlock {
    // MARK: - Forward

    /// x [R, D] ← block(x) for rows at `positions` (row r attends to cached positions
    /// 0..<positions[r] and to its own key/value). With `cacheKeys`/`cacheValues` given for
    /// writing, each row's key and value are also stored at its position (a prompt pass).
    public func forward(_ x: UnsafeMutablePointer<Float>, rows R: Int, positions: [Int], rotaryRows: RotaryRows, rotaryOffset: Int = 0,
                        keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>, writeCache: Bool, tape: BlockTape) {
        let KW = kvWidth
        let t = attentionInputs(x, rows: R, rotaryRows: rotaryRows, rotaryOffset: rotaryOffset, tape: tape)
        if writeCache {
            for r in 0..<R {
                (keys + positions[r] * KW).update(from: t.k + r * KW, count: KW)
                (values + positions[r] * KW).update(from: t.v + r * KW, count: KW)
            }
        }
        withUnsafeMutablePointer(to: &tape.attention) { at in
            attention.forward(q: t.q, ownK: t.k, ownV: t.v, rows: R, visible: positions, keys: keys, values: values,
                              into: t.attended, tape: at)
        }
        afterAttention(x, rows: R, tape: tape)
    }

    /// x [R, D] ← block(x) for several independent sequences in one batch: segment s is rows
    /// `segments[s]` of x, the next tokens of a sequence with its own cache (`caches[s]`: this
    /// layer's keys and values), row r at `positions[r]`. Every matrix product reads the weights
    /// once for all rows (batched decoding: one row per segment; batched prompts: many); only
    /// the attention runs segment by segment. Each row's key and value are stored in its cache.
    public func forwardSegments(_ x: UnsafeMutablePointer<Float>, segments: [Range<Int>], positions: [Int], rotaryRows: RotaryRows,
                                caches: [(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>)], tape: BlockTape) {
        let (QW, KW) = (queryWidth, kvWidth)
        let R = segments.last?.upperBound ?? 0
        let t = attentionInputs(x, rows: R, rotaryRows: rotaryRows, rotaryOffset: 0, tape: tape)
        for (s, rows) in segments.enumerated() where !rows.isEmpty {
            let (keys, values) = caches[s]
            for r in rows {
                (keys + positions[r] * KW).update(from: t.k + r * KW, count: KW)
                (values + positions[r] * KW).update(from: t.v + r * KW, count: KW)
            }
            let first = rows.lowerBound
            attention.forward(q: t.q + first * QW, ownK: t.k + first * KW, ownV: t.v + first * KW, rows: rows.count,
                              visible: Array(positions[rows]), keys: keys, values: values, into: t.attended + first * QW, tape: nil)
        }
        afterAttention(x, rows: R, tape: tape)
    }

    /// norm₁(x), q, k, v (rotary applied) into the tape: everything before attention.
    func attentionInputs(_ x: UnsafeMutablePointer<Float>, rows R: Int, rotaryRows: RotaryRows, rotaryOffset: Int, tape: BlockTape) -> TapePointers {
        tape.prepare(rows: R, block: self)
        let (D, QW, KW) = (width, queryWidth, kvWidth)
        let t = tape.pointers
        t.xIn.update(from: x, count: R * D)
        inputNorm.forward(x, rows: R, into: t.normed, stats: t.stats1)
        if let queryNorm {
            q.forward(t.normed, rows: R, into: t.qRaw)
            queryNorm.forward(t.qRaw, rows: R * attention.heads, into: t.q, inverseRMS: t.qStats)
        } else {
            q.forward(t.normed, rows: R, into: t.q)
        }
        if let keyNorm {
            k.forward(t.normed, rows: R, into: t.kRaw)
            keyNorm.forward(t.kRaw, rows: R * attention.kvHeads, into: t.k, inverseRMS: t.kStats)
        } else {
            k.forward(t.normed, rows: R, into: t.k)
        }
        v.forward(t.normed, rows: R, into: t.v)
        if let rotary {
            rotaryRows.with(rotaryTable) { cb, sb in
                for r in 0..<R {
                    let c = cb + (rotaryOffset + r) * rotaryRows.half, s = sb + (rotaryOffset + r) * rotaryRows.half
                    rotary.apply(t.q + r * QW, heads: attention.heads, cos: c, sin: s)
                    rotary.apply(t.k + r * KW, heads: attention.kvHeads, cos: c, sin: s)
                }
            }
        }
        return t
    }

    /// x ← r + FFN(r) with r = x + o(attended): everything after attention.
    func afterAttention(_ x: UnsafeMutablePointer<Float>, rows R: Int, tape: BlockTape) {
        let t = tape.pointers
        let D = width
        // r = x + o(attention), or x + norm(o(attention)) (Gemma 3)
        t.residual.update(from: x, count: R * D)
        if let norm = attentionOutputNorm {
            o.forward(t.attended, rows: R, into: t.attentionOut)
            norm.forward(t.attentionOut, rows: R, into: t.outputNormed, stats: t.stats3)
            for i in 0..<(R * D) { t.residual[i] += t.outputNormed[i] }
        } else {
            o.forwardAccumulate(t.attended, rows: R, into: t.residual)
        }
        let b: UnsafeMutablePointer<Float>
        if let post = postAttentionNorm {
            post.forward(t.residual, rows: R, into: t.ffnInput, stats: t.stats2)
            b = t.ffnInput
        } else {
            b = t.normed
        }
        ffnIn.forward(b, rows: R, into: t.omega)
        ffnUp?.forward(b, rows: R, into: t.up)
        // x ← r + down(act(ω) ⊙ u)
        x.update(from: t.residual, count: R * D)
        ffnFromOmega(rows: R, omega: t.omega, up: ffnUp == nil ? nil : t.up, hidden: t.hidden,
                     outputTape: ffnOutputNorm == nil ? nil : OutputNormTape(input: t.ffnOut, stats: t.stats4, normed: t.outputNormed), into: x)
    }

    /// Where a block keeps what an output norm's backward reads: the norm's input y [R, D] and
    /// its stats [R, 2]; `normed` [R, D] is forward scratch.
    public struct OutputNormTape {
        public let input, stats, normed: UnsafeMutablePointer<Float>
        public init(input: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>, normed: UnsafeMutablePointer<Float>) {
            self.input = input; self.stats = stats; self.normed = normed
        }
        /// Floats a tape of R rows and width D needs, laid out from `base`.
        public static func floats(rows: Int, width: Int) -> Int { rows * (2 * width + 2) }
        public init(base: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
            self.init(input: base, stats: base + rows * width, normed: base + rows * width + 2 * rows)
        }
    }

    /// x [R, D] += down(act(ω) ⊙ u) (+ bias), normalized first when the block has an FFN output
    /// norm (then `outputTape` must be given, and keeps what `omegaGradient` reads): the FFN
    /// after its input projection. Attribution rows enter their patched layer here, with
    /// ω := α·ω̄ and the clean u.
    public func ffnFromOmega(rows R: Int, omega: UnsafePointer<Float>, up: UnsafePointer<Float>?, hidden: UnsafeMutablePointer<Float>,
                             outputTape: OutputNormTape? = nil, into x: UnsafeMutablePointer<Float>) {
        let n = R * ffnWidth
        if let up {
            activation.gate(omega, up: up, count: n, into: hidden)
        } else {
            activation.forward(omega, count: n, into: hidden)
        }
        if let norm = ffnOutputNorm {
            guard let tape = outputTape else { preconditionFailure("internal: a block with an FFN output norm needs its tape") }
            ffnDown.forward(hidden, rows: R, into: tape.input)
            norm.forward(tape.input, rows: R, into: tape.normed, stats: tape.stats)
            for i in 0..<(R * width) { x[i] += tape.normed[i] }
        } else {
            ffnDown.forwardAccumulate(hidden, rows: R, into: x)
        }
    }

    // MARK: - Backward

    /// dω [R, J] = ∂/∂ω of (dx · x_out) for rows that entered at this block's FFN with ω and u
    /// (the derivative the attribution integrates; the block's input is not needed).
    /// With an FFN output norm, `outputTape` is the one `ffnFromOmega` filled (its `normed`
    /// becomes scratch).
    public func omegaGradient(dOut: UnsafePointer<Float>, rows R: Int, omega: UnsafePointer<Float>, up: UnsafePointer<Float>?,
                              scratch: UnsafeMutablePointer<Float>, outputTape: OutputNormTape? = nil, into dOmega: UnsafeMutablePointer<Float>) {
        if let norm = ffnOutputNorm {
            guard let tape = outputTape else { preconditionFailure("internal: a block with an FFN output norm needs its tape") }
            norm.backward(dOut, x: tape.input, stats: tape.stats, rows: R, into: tape.normed, accumulate: false)
            ffnDown.backwardInput(tape.normed, rows: R, into: scratch)
        } else {
            ffnDown.backwardInput(dOut, rows: R, into: scratch)       // d(act(ω)⊙u) = dx · W_down
        }
        let n = R * ffnWidth
        if let up {
            activation.gateBackward(scratch, omega: omega, up: up, count: n, dOmega: dOmega, dUp: nil)
        } else {
            for i in 0..<n { dOmega[i] = scratch[i] * activation.derivative(omega[i]) }
        }
    }

    /// What the FFN's backward knows, for weight gradients of chosen neurons (enhance): dω, du
    /// [R, J] (du nil without up_proj), the gradient at down_proj's output and the FFN input b
    /// [R, D], and h = act(ω) ⊙ u [R, J]. Valid only during the call.
    public struct FFNGradientView {
        public let dOmega: UnsafePointer<Float>, dUp: UnsafePointer<Float>?
        public let dDown: UnsafePointer<Float>, input: UnsafePointer<Float>, hidden: UnsafePointer<Float>
    }

    /// dx [R, D] ← ∂/∂x_in of (dx · block(x_in)), in place, from the tape of `forward`.
    /// Only the rows' own path is differentiated: cached keys/values are constants. With
    /// `wholeSequence` the rows are a whole sequence from position 0 (a training pass) and every
    /// key and value is one of theirs: the gradient flows through all of them.
    /// `ffnGradients` sees the FFN's backward (FFNGradientView) before the attention's.
    public func backward(_ dx: UnsafeMutablePointer<Float>, rows R: Int, rotaryRows: RotaryRows, rotaryOffset: Int = 0,
                         keys: UnsafePointer<Float>, values: UnsafePointer<Float>, tape: BlockTape, grads: BlockGradients,
                         wholeSequence: Bool = false, ffnGradients: ((FFNGradientView) -> Void)? = nil) {
        grads.prepare(rows: R, block: self)
        let (D, QW, KW, J) = (width, queryWidth, kvWidth, ffnWidth)
        let t = tape.pointers, g = grads.pointers
        do {
            // FFN: x_out = r + down(h) (or r + norm(down(h))), h = act(ω) ⊙ u, ω = W_in b, u = W_up b.
            if let norm = ffnOutputNorm {
                norm.backward(dx, x: t.ffnOut, stats: t.stats4, rows: R, into: g.dOutput, accumulate: false)
                ffnDown.backwardInput(g.dOutput, rows: R, into: g.dHidden)
            } else {
                ffnDown.backwardInput(dx, rows: R, into: g.dHidden)
            }
            if ffnUp != nil {
                activation.gateBackward(g.dHidden, omega: t.omega, up: t.up, count: R * J, dOmega: g.dOmega, dUp: g.dUp)
            } else {
                activation.backward(g.dHidden, x: t.omega, count: R * J, into: g.dOmega)
            }
            if let ffnGradients {
                ffnGradients(FFNGradientView(dOmega: g.dOmega, dUp: ffnUp == nil ? nil : g.dUp, dDown: ffnOutputNorm == nil ? dx : g.dOutput,
                                             input: postAttentionNorm == nil ? t.normed : t.ffnInput, hidden: t.hidden))
            }
            ffnIn.backwardInput(g.dOmega, rows: R, into: g.dFFNInput)
            if let up = ffnUp { up.backwardInput(g.dUp, rows: R, into: g.dFFNInput, accumulate: true) }
            // dr = dx_out (+ norm₂ backward of db in sequential blocks).
            g.dResidual.update(from: dx, count: R * D)
            if let post = postAttentionNorm {
                post.backward(g.dFFNInput, x: t.residual, stats: t.stats2, rows: R, into: g.dResidual, accumulate: true)
            }
            // Attention: r = x + o(attend(q, k, v)) (or x + norm(o(…))).
            if let norm = attentionOutputNorm {
                norm.backward(g.dResidual, x: t.attentionOut, stats: t.stats3, rows: R, into: g.dOutput, accumulate: false)
                o.backwardInput(g.dOutput, rows: R, into: g.dAttended)
            } else {
                o.backwardInput(g.dResidual, rows: R, into: g.dAttended)
            }
            if wholeSequence {
                attention.backwardSequence(dOut: g.dAttended, q: t.q, keys: keys, values: values, rows: R, tape: tape.attention,
                                           dq: g.dq, dk: g.dk, dv: g.dv)
            } else {
                attention.backward(dOut: g.dAttended, q: t.q, ownK: t.k, ownV: t.v, rows: R, keys: keys, values: values,
                                   tape: tape.attention, dq: g.dq, dk: g.dk, dv: g.dv)
            }
            if let rotary {
                rotaryRows.with(rotaryTable) { cb, sb in
                    for r in 0..<R {
                        let c = cb + (rotaryOffset + r) * rotaryRows.half, s = sb + (rotaryOffset + r) * rotaryRows.half
                        rotary.apply(g.dq + r * QW, heads: attention.heads, cos: c, sin: s, inverse: true)
                        rotary.apply(g.dk + r * KW, heads: attention.kvHeads, cos: c, sin: s, inverse: true)
                    }
                }
            }
            // Per-head q/k norms (Gemma 3), in place: each row's dot is taken before it is written.
            if let queryNorm {
                queryNorm.backward(g.dq, x: t.qRaw, inverseRMS: t.qStats, rows: R * attention.heads, into: g.dq, accumulate: false)
            }
            if let keyNorm {
                keyNorm.backward(g.dk, x: t.kRaw, inverseRMS: t.kStats, rows: R * attention.kvHeads, into: g.dk, accumulate: false)
            }
            q.backwardInput(g.dq, rows: R, into: g.dNormed)
            k.backwardInput(g.dk, rows: R, into: g.dNormed, accumulate: true)
            v.backwardInput(g.dv, rows: R, into: g.dNormed, accumulate: true)
            if postAttentionNorm == nil {
                // Parallel block: the FFN read norm₁(x) too.
                for i in 0..<(R * D) { g.dNormed[i] += g.dFFNInput[i] }
            }
            // dx_in = dr + norm₁ backward.
            dx.update(from: g.dResidual, count: R * D)
            inputNorm.backward(g.dNormed, x: t.xIn, stats: t.stats1, rows: R, into: dx, accumulate: true)
        }
    }
}

// MARK: - Raw views (valid until the next prepare)

struct TapePointers {
    let xIn, stats1, normed, q, k, v, attended, residual, stats2, ffnInput, omega, up, hidden: UnsafeMutablePointer<Float>
    let qRaw, kRaw, qStats, kStats, attentionOut, stats3, ffnOut, stats4, outputNormed: UnsafeMutablePointer<Float>
}

struct GradientPointers {
    let dHidden, dOmega, dUp, dFFNInput, dResidual, dAttended, dq, dk, dv, dNormed, dOutput: UnsafeMutablePointer<Float>
}

extension BlockTape {
    var pointers: TapePointers {
        TapePointers(xIn: xIn.pointer, stats1: stats1.pointer, normed: normed.pointer, q: q.pointer, k: k.pointer, v: v.pointer,
                     attended: attended.pointer, residual: residual.pointer, stats2: stats2.pointer, ffnInput: ffnInput.pointer,
                     omega: omega.pointer, up: up.pointer, hidden: hidden.pointer,
                     qRaw: qRaw.pointer, kRaw: kRaw.pointer, qStats: qStats.pointer, kStats: kStats.pointer,
                     attentionOut: attentionOut.pointer, stats3: stats3.pointer, ffnOut: ffnOut.pointer, stats4: stats4.pointer,
                     outputNormed: outputNormed.pointer)
    }
}

extension BlockGradients {
    var pointers: GradientPointers {
        GradientPointers(dHidden: dHidden.pointer, dOmega: dOmega.pointer, dUp: dUp.pointer, dFFNInput: dFFNInput.pointer,
                         dResidual: dResidual.pointer, dAttended: dAttended.pointer, dq: dq.pointer, dk: dk.pointer,
                         dv: dv.pointer, dNormed: dNormed.pointer, dOutput: dOutput.pointer)
    }
}

/// A growable Float allocation owned by a tape: `ensure` keeps the address stable unless it has
/// to grow (contents are not preserved across growth). Pointers are handed to BLAS directly.
public final class FloatBuffer {
    public private(set) var pointer: UnsafeMutablePointer<Float>
    public private(set) var capacity: Int

    public init(count: Int = 0) {
        capacity = max(count, 1)
        pointer = .allocate(capacity: capacity)
        pointer.initialize(repeating: 0, count: capacity)
    }

    deinit { pointer.deallocate() }

    public func ensure(_ n: Int) {
        guard n > capacity else { return }
        pointer.deallocate()
        capacity = n
        pointer = .allocate(capacity: n)
        pointer.initialize(repeating: 0, count: n)
    }
}

