// Causal attention of a batch of rows against a KV cache (grouped-query aware), with backward.
import COpenBLAS
import Foundation

/// Keys and values of every layer for positions 0..<count (rotary already applied to keys).
public final class KVCache: @unchecked Sendable {
    public let layers: Int       // L (of this cache: a stage's layers only)
    /// The first layer held (a pipeline stage's cache starts at its first layer).
    public let firstLayer: Int
    public let kvHeads: Int      // G
    public let headDim: Int      // E
    public let capacity: Int     // T max
    public private(set) var count: Int = 0
    private let keys: UnsafeMutableBufferPointer<Float>     // [L, T, G, E]
    private let values: UnsafeMutableBufferPointer<Float>   // [L, T, G, E]

    public convenience init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int) {
        self.init(layers: 0..<layers, kvHeads: kvHeads, headDim: headDim, capacity: capacity)
    }

    public init(layers range: Range<Int>, kvHeads: Int, headDim: Int, capacity: Int) {
        let layers = range.count
        firstLayer = range.lowerBound
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim; self.capacity = capacity
        let n = layers * capacity * kvHeads * headDim
        keys = .allocate(capacity: max(n, 1))
        values = .allocate(capacity: max(n, 1))
    }

    deinit { keys.deallocate(); values.deallocate() }

    public var rowWidth: Int { kvHeads * headDim }

    /// K of `layer` at position 0: [T, G, E].
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys.baseAddress! + (layer - firstLayer) * capacity * rowWidth }
    public func values(layer: Int) -> UnsafeMutablePointer<Float> { values.baseAddress! + (layer - firstLayer) * capacity * rowWidth }

    /// Marks positions count..<count+n as filled (after every layer has written them).
    public func advance(by n: Int) { count += n }

    /// Forgets positions ≥ n (e.g. to reuse a prompt's cache for another continuation).
    public func truncate(to n: Int) { count = min(count, n) }
}

/// softmax(q·Kᵀ·scale)·V per head, where row r sees cached positions 0..<visible[r] and then
/// its own key/value (the row's position is visible[r]). A prompt pass writes its rows' keys
/// and values into the cache first and gives row t visible = start + t; an attribution row
/// keeps its own (patched) key/value out of the cache, which holds the clean prefix.
public struct CausalAttention {
    public let heads: Int        // H
    public let kvHeads: Int      // G (query head h reads kv head h / (H/G))
    public let headDim: Int      // E
    public let scale: Float
    /// A sliding window of W keys (Gemma 3's local layers): the row at position p sees only
    /// positions p − W + 1 … p, as HF's `kv_idx > q_idx − sliding_window`. nil: every position.
    public let window: Int?

    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int? = nil) {
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.scale = scale; self.window = window
    }

    /// The first position the row at `p` may see.
    @inline(__always) func firstVisible(_ p: Int) -> Int { window.map { max(0, p - $0 + 1) } ?? 0 }

    /// What backward reads: softmax probabilities, per row and head, over visible[r] + 1 keys.
    public struct Tape {
        public var visible: [Int] = []
        public var offsets: [Int] = []          // start of row r's [H, visible[r] + 1] block
        public var probabilities: [Float] = []

        public init() {}

        mutating func prepare(visible v: [Int], heads: Int) {
            visible = v
            offsets = [Int](repeating: 0, count: v.count)
            var o = 0
            for (r, n) in v.enumerated() { offsets[r] = o; o += heads * (n + 1) }
            if probabilities.count < o { probabilities = [Float](repeating: 0, count: o) }
        }
    }

    /// Rows per sgemm block: a block's rows share one scores matrix [n, max visible].
    static let blockRows = 256

    /// out [R, H·E] from q [R, H·E] and the rows' own k, v [R, G·E].
    /// A block of rows runs as one sgemm per head against the longest prefix in the block, each
    /// row masked beyond its own (a prompt pass wastes the upper triangle, ~E·T²/2 per head, and
    /// saves 2·H·T BLAS calls: SmolLM2 128-token prefill 0.458 → 0.438 s on one thread);
    /// a single row uses sgemv. Scores and softmax in float32 as HF's eager path (normalizer in
    /// Double). Row r's probabilities are kept as [H, visible[r] + 1], its own key last.
    public func forward(q: UnsafePointer<Float>, ownK: UnsafePointer<Float>, ownV: UnsafePointer<Float>, rows: Int,
                        visible: [Int], keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                        into out: UnsafeMutablePointer<Float>, tape: UnsafeMutablePointer<Tape>? = nil) {
        let (H, G, E) = (heads, kvHeads, headDim)
        let group = H / G
        let (ldq, ldkv) = (H * E, G * E)
        tape?.pointee.prepare(visible: visible, heads: H)
        var scratch: [Float] = []
        var r0 = 0
        while r0 < rows {
            let r1 = min(rows, r0 + Self.blockRows)
            let n = r1 - r0
            let pmax = visible[r0..<r1].max()!
            let width = pmax + 1
            if scratch.count < n * width { scratch = [Float](repeating: 0, count: n * width) }
            scratch.withUnsafeMutableBufferPointer { sb in
                let s = sb.baseAddress!          // [n, pmax + 1]; row i valid on 0...visible[r0+i]
                for h in 0..<H {
                    let g = h / group
                    let qh = q + r0 * ldq + h * E
                    // s[:, 0..<pmax] = scale · Q_h · K_gᵀ over the longest cached prefix.
                    rowsTimesPrefixT(n: n, p: pmax, e: E, alpha: scale, a: qh, lda: ldq, b: keys + g * E, ldb: ldkv, c: s, ldc: width)
                    for i in 0..<n {
                        let p = visible[r0 + i]
                        let qi = qh + i * ldq, ki = ownK + (r0 + i) * ldkv + g * E
                        var d: Float = 0
                        for e in 0..<E { d += qi[e] * ki[e] }
                        let row = s + i * width
                        row[p] = d * scale                       // own key right after the prefix
                        for j in 0..<firstVisible(p) { row[j] = -.infinity }   // outside the window: probability 0
                        softmaxInPlace(row, count: p + 1)
                        for j in (p + 1)..<width { row[j] = 0 }  // beyond this row's prefix
                    }
                    if let tape {
                        tape.pointee.probabilities.withUnsafeMutableBufferPointer { pb in
                            for i in 0..<n {
                                let p = visible[r0 + i]
                                (pb.baseAddress! + tape.pointee.offsets[r0 + i] + h * (p + 1)).update(from: s + i * width, count: p + 1)
                            }
                        }
                    }
                    // O_h = P[:, 0..<pmax] · V_g (own column zeroed), then + P_own · v_own.
                    var own = [Float](repeating: 0, count: n)
                    for i in 0..<n {
                        let p = visible[r0 + i]
                        own[i] = s[i * width + p]
                        s[i * width + p] = 0
                    }
                    let oh = out + r0 * ldq + h * E
                    rowsTimesPrefix(n: n, p: pmax, e: E, alpha: 1, a: s, lda: width, b: values + g * E, ldb: ldkv, c: oh, ldc: ldq)
                    for i in 0..<n {
                        let w = own[i], vi = ownV + (r0 + i) * ldkv + g * E, oi = oh + i * ldq
                        for e in 0..<E { oi[e] += w * vi[e] }
                    }
                }
            }
            r0 = r1
        }
    }

    /// Backward of `forward` with respect to the rows' own q, k, v (the cache is a constant:
    /// it holds the clean prefix, which does not depend on anything a row patches).
    /// dq [R, H·E], dk, dv [R, G·E] are overwritten.
    public func backward(dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, ownK: UnsafePointer<Float>, ownV: UnsafePointer<Float>,
                         rows: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, tape: Tape,
                         dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>) {
        let (H, G, E) = (heads, kvHeads, headDim)
        let group = H / G
        let (ldq, ldkv) = (H * E, G * E)
        dk.update(repeating: 0, count: rows * ldkv)
        dv.update(repeating: 0, count: rows * ldkv)
        let visible = tape.visible
        var scratch: [Float] = []
        tape.probabilities.withUnsafeBufferPointer { pb in
            var r0 = 0
            while r0 < rows {
                let r1 = min(rows, r0 + Self.blockRows)
                let n = r1 - r0
                let pmax = visible[r0..<r1].max()!
                let width = pmax + 1
                if scratch.count < n * width { scratch = [Float](repeating: 0, count: n * width) }
                scratch.withUnsafeMutableBufferPointer { sb in
                    let ds = sb.baseAddress!     // dP, then dScores [n, pmax + 1]
                    var own = [Float](repeating: 0, count: n)
                    for h in 0..<H {
                        let g = h / group
                        let doh = dOut + r0 * ldq + h * E
                        // dP[:, 0..<pmax] = dO_h · V_gᵀ;  dP_own = dO_h · v_own.
                        rowsTimesPrefixT(n: n, p: pmax, e: E, alpha: 1, a: doh, lda: ldq, b: values + g * E, ldb: ldkv, c: ds, ldc: width)
                        for i in 0..<n {
                            let r = r0 + i, p = visible[r]
                            let P = pb.baseAddress! + tape.offsets[r] + h * (p + 1)
                            let doi = doh + i * ldq, vi = ownV + r * ldkv + g * E, dvi = dv + r * ldkv + g * E
                            var d: Float = 0
                            for e in 0..<E { d += doi[e] * vi[e] }
                            let row = ds + i * width
                            row[p] = d
                            // dv_own += P_own · dO;  dScores = P ⊙ (dP − Σ P·dP), zero beyond p.
                            for e in 0..<E { dvi[e] += P[p] * doi[e] }
                            var dot: Float = 0
                            for j in 0...p { dot += P[j] * row[j] }
                            for j in 0...p { row[j] = P[j] * (row[j] - dot) }
                            own[i] = row[p]
                            row[p] = 0
                            for j in (p + 1)..<width { row[j] = 0 }
                        }
                        // dQ_h = scale · (dS[:, 0..<pmax] · K_g + dS_own · k_own); dk_own = scale · dS_own · q.
                        let dqh = dq + r0 * ldq + h * E
                        rowsTimesPrefix(n: n, p: pmax, e: E, alpha: scale, a: ds, lda: width, b: keys + g * E, ldb: ldkv, c: dqh, ldc: ldq)
                        for i in 0..<n {
                            let r = r0 + i
                            let w = own[i] * scale
                            let ki = ownK + r * ldkv + g * E, qi = q + r * ldq + h * E
                            let dqi = dqh + i * ldq, dki = dk + r * ldkv + g * E
                            for e in 0..<E {
                                dqi[e] += w * ki[e]
                                dki[e] += w * qi[e]
                            }
                        }
                    }
                }
                r0 = r1
            }
        }
    }
}

extension CausalAttention {
    /// Backward of a prompt pass over a whole sequence from position 0 (`forward` with visible
    /// = 0..<T and the rows' keys and values written to the cache first): every position's key and
    /// value is a variable here, so dk and dv collect the gradient of every later row, not only
    /// the row's own. `keys`, `values` [T, G·E] are the pass's (the cache's first T rows).
    /// Per head, with P the [T, T] probabilities (zero above the diagonal and outside a window):
    ///   dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(P ⊙ dP)),  dQ = s·dS·K,  dK += s·dSᵀ·Q,  dV += Pᵀ·dO.
    /// dq [T, H·E], dk, dv [T, G·E] are overwritten.
    public func backwardSequence(dOut: UnsafePointer<Float>, q: UnsafePointer<Float>, keys: UnsafePointer<Float>,
                                 values: UnsafePointer<Float>, rows T: Int, tape: Tape,
                                 dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>) {
        precondition(tape.visible == Array(0..<T), "internal: backwardSequence needs a pass over positions 0..<\(T)")
        let (H, G, E) = (heads, kvHeads, headDim)
        let group = H / G
        let (ldq, ldkv) = (H * E, G * E)
        dk.update(repeating: 0, count: T * ldkv)
        dv.update(repeating: 0, count: T * ldkv)
        let P = UnsafeMutablePointer<Float>.allocate(capacity: T * T), dS = UnsafeMutablePointer<Float>.allocate(capacity: T * T)
        defer { P.deallocate(); dS.deallocate() }
        tape.probabilities.withUnsafeBufferPointer { pb in
            for h in 0..<H {
                let g = h / group
                // P [T, T] from the tape's rows ([H, t + 1] each).
                P.update(repeating: 0, count: T * T)
                for t in 0..<T { (P + t * T).update(from: pb.baseAddress! + tape.offsets[t] + h * (t + 1), count: t + 1) }
                let (doh, qh, kg, vg) = (dOut + h * E, q + h * E, keys + g * E, values + g * E)
                // dP = dO_h · V_gᵀ  [T, T]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(T), Int32(T), Int32(E), 1, doh, Int32(ldq), vg, Int32(ldkv),
                            0, dS, Int32(T))
                for t in 0..<T {
                    let pr = P + t * T, dr = dS + t * T
                    var dot: Float = 0
                    for s in 0...t { dot += pr[s] * dr[s] }
                    for s in 0...t { dr[s] = pr[s] * (dr[s] - dot) }
                    for s in (t + 1)..<T { dr[s] = 0 }
                }
                // dQ_h = scale · dS · K_g;  dK_g += scale · dSᵀ · Q_h;  dV_g += Pᵀ · dO_h.
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(T), Int32(E), Int32(T), scale, dS, Int32(T), kg, Int32(ldkv),
                            0, dq + h * E, Int32(ldq))
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(T), Int32(E), Int32(T), scale, dS, Int32(T), qh, Int32(ldq),
                            1, dk + g * E, Int32(ldkv))
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(T), Int32(E), Int32(T), 1, P, Int32(T), doh, Int32(ldq),
                            1, dv + g * E, Int32(ldkv))
            }
        }
    }
}

/// C [n, p] = α · A [n, E] · Bᵀ where B is p rows of E (stride ldb): one row goes through sgemv.
@inline(__always)
func rowsTimesPrefixT(n: Int, p: Int, e: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard p > 0 else { return }
    if n == 1 {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(p), Int32(e), alpha, b, Int32(ldb), a, 1, 0, c, 1)
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(p), Int32(e), alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }
}

/// C [n, E] = α · A [n, p] · B where B is p rows of E (stride ldb); zero when p = 0.
@inline(__always)
func rowsTimesPrefix(n: Int, p: Int, e: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                     b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if p == 0 {
        for i in 0..<n { for j in 0..<e { c[i * ldc + j] = 0 } }
    } else if n == 1 {
        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(p), Int32(e), alpha, b, Int32(ldb), a, 1, 0, c, 1)
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(e), Int32(p), alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }
}

/// Numerically stable softmax over `count` floats, in place. The normalizer is summed in
/// Double: over SmolLM2's 49,152-word vocabulary a Float running sum drifts by ~1e-4 relative
/// (thousands of ~1e-6 terms added to a sum near 1 each lose part of their value), which is
/// the whole error budget of P against a float64 reference; measured: P 0.70741 (Float sum)
/// vs 0.70727 (float64), 0.707271 with the Double sum.
@inline(__always)
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    guard n > 0 else { return }
    // Eight lanes (the scalar loop and its libm call per element were 9 % of a long prompt's pass).
    let sum = VectorMath.exponentiateShifted(x, count: n)
    let inv = Float(1 / sum)
    var i = 0
    while i + 8 <= n { store8(load8(x + i) * inv, x + i); i += 8 }
    while i < n { x[i] *= inv; i += 1 }
}
