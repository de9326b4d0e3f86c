// Causal multi-head attention of a batch of rows against a KV cache (grouped-query aware).
import COpenBLAS
import Foundation

/// Keys and values of every layer for positions 0..<count (rotary already applied to keys).
public final class KVCache: @unchecked Sendable {
    public let layers: Int       // L
    public let kvHeads: Int      // G
    public let headDim: Int      // E
    public let capacity: Int     // T max
    public private(set) var count: Int = 0
    private let keys: UnsafeMutableBufferPointer<Float>     // [L, T, G, E]
    private let values: UnsafeMutableBufferPointer<Float>   // [L, T, G, E]

    public init(layers: Int, kvHeads: Int, headDim: Int, capacity: Int) {
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim; self.capacity = capacity
        let n = layers * capacity * kvHeads * headDim
        keys = .allocate(capacity: max(n, 1))
        values = .allocate(capacity: max(n, 1))
    }

    deinit { keys.deallocate(); values.deallocate() }

    public var rowWidth: Int { kvHeads * headDim }

    /// K of `layer` at position 0: [T, G, E].
    public func keys(layer: Int) -> UnsafeMutablePointer<Float> { keys.baseAddress! + layer * capacity * rowWidth }
    public func values(layer: Int) -> UnsafeMutablePointer<Float> { values.baseAddress! + layer * capacity * rowWidth }

    /// Marks positions count..<count+n as filled (after every layer has written them).
    public func advance(by n: Int) { count += n }

    /// Forgets positions ≥ n (e.g. to reuse a prompt's cache for another continuation).
    public func truncate(to n: Int) { count = min(count, n) }
}

/// softmax(q·Kᵀ·scale)·V per head, for rows that each see their own prefix of the cache.
public struct CausalAttention {
    public let heads: Int        // H
    public let kvHeads: Int      // G (H is a multiple of G; query head h reads kv head h / (H/G))
    public let headDim: Int      // E
    public let scale: Float

    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float) {
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.scale = scale
    }

    /// out [R, H·E] for q [R, H·E]: row r attends to positions 0..<visible[r] of the layer's
    /// cache `keys`/`values` [T, G, E]. Scores and softmax in float32, as HF's eager path.
    public func forward(q: UnsafePointer<Float>, rows: Int, visible: [Int],
                        keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                        into out: UnsafeMutablePointer<Float>) {
        let group = heads / kvHeads
        let ldkv = kvHeads * headDim
        let maxVisible = visible.max() ?? 0
        var scores = [Float](repeating: 0, count: max(maxVisible, 1))
        scores.withUnsafeMutableBufferPointer { sc in
            let p = sc.baseAddress!
            for r in 0..<rows {
                let n = visible[r]
                for h in 0..<heads {
                    let g = h / group
                    let qh = q + r * heads * headDim + h * headDim
                    let oh = out + r * heads * headDim + h * headDim
                    // scores [n] = scale · K[0..<n, g, :] · q
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(headDim), scale,
                                keys + g * headDim, Int32(ldkv), qh, 1, 0, p, 1)
                    softmaxInPlace(p, count: n)
                    // out [E] = V[0..<n, g, :]ᵀ · p
                    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(n), Int32(headDim), 1,
                                values + g * headDim, Int32(ldkv), p, 1, 0, oh, 1)
                }
            }
        }
    }
}

/// Numerically stable softmax over `count` floats, in place.
@inline(__always)
public func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int) {
    guard count > 0 else { return }
    var m = -Float.infinity
    for i in 0..<count { m = max(m, x[i]) }
    var sum: Float = 0
    for i in 0..<count { let e = expf(x[i] - m); x[i] = e; sum += e }
    let inv = 1 / sum
    for i in 0..<count { x[i] *= inv }
}
