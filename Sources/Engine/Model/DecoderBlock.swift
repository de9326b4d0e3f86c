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
/// Llama's gate_proj, GPT-2's c_fc, GPT-J's fc_in. `ffnUp` is SwiGLU's unscaled up_proj.
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

    var width: Int { ffnDown.outFeatures }               // D
    var ffnWidth: Int { ffnIn.outFeatures }              // J
    public var queryWidth: Int { q.outFeatures }         // H·E
    public var kvWidth: Int { k.outFeatures }            // G·E
}

/// Cos/sin rows for a list of positions, shared by every block of one pass.
public struct RotaryRows {
    public let cos: [Float]     // [R, P/2]
    public let sin: [Float]     // [R, P/2]
    public let half: Int        // P/2

    public init(_ rotary: RotaryEmbedding?, positions: [Int]) {
        if let rotary {
            (cos, sin) = rotary.table(positions: positions)
            half = rotary.rotaryDim / 2
        } else {
            (cos, sin, half) = ([], [], 0)
        }
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

    public init() {}

    /// Uses `other`'s forward scratch (normed, attended, ffnInput, hidden) instead of its own: tapes
    /// filled one after another and read back only by `backward` need one copy.
    public func shareForwardScratch(with other: BlockTape) {
        normed = other.normed; attended = other.attended; ffnInput = other.ffnInput; hidden = other.hidden
    }

    func prepare(rows r: Int, block b: DecoderBlock) {
        rows = r
        xIn.ensure(r * b.width); stats1.ensure(2 * r); normed.ensure(r * b.width)
        q.ensure(r * b.queryWidth); k.ensure(r * b.kvWidth); v.ensure(r * b.kvWidth)
        attended.ensure(r * b.queryWidth); residual.ensure(r * b.width); stats2.ensure(2 * r)
        ffnInput.ensure(r * b.width); omega.ensure(r * b.ffnWidth); hidden.ensure(r * b.ffnWidth)
        if b.ffnUp != nil { up.ensure(r * b.ffnWidth) }
    }

    /// Bytes held, for memory reports (`ownOnly`: without the forward scratch, which may be shared).
    public func bytes(ownOnly: Bool = false) -> Int {
        let shared = ownOnly ? [] : [normed, attended, ffnInput, hidden]
        return 4 * (([xIn, stats1, q, k, v, residual, stats2, omega, up] + shared).reduce(0) { $0 + $1.capacity }
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

    public init() {}

    func prepare(rows r: Int, block b: DecoderBlock) {
        dHidden.ensure(r * b.ffnWidth); dOmega.ensure(r * b.ffnWidth); dUp.ensure(r * b.ffnWidth)
        dFFNInput.ensure(r * b.width); dResidual.ensure(r * b.width); dAttended.ensure(r * b.queryWidth)
        dq.ensure(r * b.queryWidth); dk.ensure(r * b.kvWidth); dv.ensure(r * b.kvWidth); dNormed.ensure(r * b.width)
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

    /// x [R, D] ← block(x) for R independent sequences, row r the next token of sequence r at
    /// `positions[r]` with its own cache (`caches[r]`: this layer's keys and values): batched
    /// decoding, where every matrix product reads the weights once for all rows and only the
    /// attention runs row by row. Each row's key and value are stored in its cache.
    public func forwardDecoding(_ x: UnsafeMutablePointer<Float>, rows R: Int, positions: [Int], rotaryRows: RotaryRows,
                                caches: [(keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>)], tape: BlockTape) {
        let (QW, KW) = (queryWidth, kvWidth)
        let t = attentionInputs(x, rows: R, rotaryRows: rotaryRows, rotaryOffset: 0, tape: tape)
        for r in 0..<R {
            let (keys, values) = caches[r]
            (keys + positions[r] * KW).update(from: t.k + r * KW, count: KW)
            (values + positions[r] * KW).update(from: t.v + r * KW, count: KW)
            attention.forward(q: t.q + r * QW, ownK: t.k + r * KW, ownV: t.v + r * KW, rows: 1, visible: [positions[r]],
                              keys: keys, values: values, into: t.attended + r * QW, tape: nil)
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
        q.forward(t.normed, rows: R, into: t.q)
        k.forward(t.normed, rows: R, into: t.k)
        v.forward(t.normed, rows: R, into: t.v)
        if let rotary {
            rotaryRows.cos.withUnsafeBufferPointer { cb in rotaryRows.sin.withUnsafeBufferPointer { sb in
                for r in 0..<R {
                    let c = cb.baseAddress! + (rotaryOffset + r) * rotaryRows.half, s = sb.baseAddress! + (rotaryOffset + r) * rotaryRows.half
                    rotary.apply(t.q + r * QW, heads: attention.heads, cos: c, sin: s)
                    rotary.apply(t.k + r * KW, heads: attention.kvHeads, cos: c, sin: s)
                }
            } }
        }
        return t
    }

    /// x ← r + FFN(r) with r = x + o(attended): everything after attention.
    func afterAttention(_ x: UnsafeMutablePointer<Float>, rows R: Int, tape: BlockTape) {
        let t = tape.pointers
        let D = width
        // r = x + o(attention)
        t.residual.update(from: x, count: R * D)
        o.forwardAccumulate(t.attended, rows: R, into: t.residual)
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
        ffnFromOmega(rows: R, omega: t.omega, up: ffnUp == nil ? nil : t.up, hidden: t.hidden, into: x)
    }

    /// x [R, D] += down(act(ω) ⊙ u) (+ bias): the FFN after its input projection. Attribution
    /// rows enter their patched layer here, with ω := α·ω̄ and the clean u.
    public func ffnFromOmega(rows R: Int, omega: UnsafePointer<Float>, up: UnsafePointer<Float>?, hidden: UnsafeMutablePointer<Float>,
                             into x: UnsafeMutablePointer<Float>) {
        let n = R * ffnWidth
        if let up {
            activation.gate(omega, up: up, count: n, into: hidden)
        } else {
            activation.forward(omega, count: n, into: hidden)
        }
        ffnDown.forwardAccumulate(hidden, rows: R, into: x)
    }

    // MARK: - Backward

    /// dω [R, J] = ∂/∂ω of (dx · x_out) for rows that entered at this block's FFN with ω and u
    /// (the derivative the attribution integrates; the block's input is not needed).
    public func omegaGradient(dOut: UnsafePointer<Float>, rows R: Int, omega: UnsafePointer<Float>, up: UnsafePointer<Float>?,
                              scratch: UnsafeMutablePointer<Float>, into dOmega: UnsafeMutablePointer<Float>) {
        ffnDown.backwardInput(dOut, rows: R, into: scratch)       // d(act(ω)⊙u) = dx · W_down
        let n = R * ffnWidth
        if let up {
            activation.gateBackward(scratch, omega: omega, up: up, count: n, dOmega: dOmega, dUp: nil)
        } else {
            for i in 0..<n { dOmega[i] = scratch[i] * activation.derivative(omega[i]) }
        }
    }

    /// dx [R, D] ← ∂/∂x_in of (dx · block(x_in)), in place, from the tape of `forward`.
    /// Only the rows' own path is differentiated: cached keys/values are constants.
    public func backward(_ dx: UnsafeMutablePointer<Float>, rows R: Int, rotaryRows: RotaryRows, rotaryOffset: Int = 0,
                         keys: UnsafePointer<Float>, values: UnsafePointer<Float>, tape: BlockTape, grads: BlockGradients) {
        grads.prepare(rows: R, block: self)
        let (D, QW, KW, J) = (width, queryWidth, kvWidth, ffnWidth)
        let t = tape.pointers, g = grads.pointers
        do {
            // FFN: x_out = r + down(h), h = act(ω) ⊙ u, ω = W_in b, u = W_up b.
            ffnDown.backwardInput(dx, rows: R, into: g.dHidden)
            if ffnUp != nil {
                activation.gateBackward(g.dHidden, omega: t.omega, up: t.up, count: R * J, dOmega: g.dOmega, dUp: g.dUp)
            } else {
                activation.backward(g.dHidden, x: t.omega, count: R * J, into: g.dOmega)
            }
            ffnIn.backwardInput(g.dOmega, rows: R, into: g.dFFNInput)
            if let up = ffnUp { up.backwardInput(g.dUp, rows: R, into: g.dFFNInput, accumulate: true) }
            // dr = dx_out (+ norm₂ backward of db in sequential blocks).
            g.dResidual.update(from: dx, count: R * D)
            if let post = postAttentionNorm {
                post.backward(g.dFFNInput, x: t.residual, stats: t.stats2, rows: R, into: g.dResidual, accumulate: true)
            }
            // Attention: r = x + o(attend(q, k, v)).
            o.backwardInput(g.dResidual, rows: R, into: g.dAttended)
            attention.backward(dOut: g.dAttended, q: t.q, ownK: t.k, ownV: t.v, rows: R, keys: keys, values: values,
                               tape: tape.attention, dq: g.dq, dk: g.dk, dv: g.dv)
            if let rotary {
                rotaryRows.cos.withUnsafeBufferPointer { cb in rotaryRows.sin.withUnsafeBufferPointer { sb in
                    for r in 0..<R {
                        let c = cb.baseAddress! + (rotaryOffset + r) * rotaryRows.half, s = sb.baseAddress! + (rotaryOffset + r) * rotaryRows.half
                        rotary.apply(g.dq + r * QW, heads: attention.heads, cos: c, sin: s, inverse: true)
                        rotary.apply(g.dk + r * KW, heads: attention.kvHeads, cos: c, sin: s, inverse: true)
                    }
                } }
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
}

struct GradientPointers {
    let dHidden, dOmega, dUp, dFFNInput, dResidual, dAttended, dq, dk, dv, dNormed: UnsafeMutablePointer<Float>
}

extension BlockTape {
    var pointers: TapePointers {
        TapePointers(xIn: xIn.pointer, stats1: stats1.pointer, normed: normed.pointer, q: q.pointer, k: k.pointer, v: v.pointer,
                     attended: attended.pointer, residual: residual.pointer, stats2: stats2.pointer, ffnInput: ffnInput.pointer,
                     omega: omega.pointer, up: up.pointer, hidden: hidden.pointer)
    }
}

extension BlockGradients {
    var pointers: GradientPointers {
        GradientPointers(dHidden: dHidden.pointer, dOmega: dOmega.pointer, dUp: dUp.pointer, dFFNInput: dFFNInput.pointer,
                         dResidual: dResidual.pointer, dAttended: dAttended.pointer, dq: dq.pointer, dk: dk.pointer,
                         dv: dv.pointer, dNormed: dNormed.pointer)
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

