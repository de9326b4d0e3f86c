// y = x·Wᵀ + b over a batch of rows, on cblas_sgemm (DESIGN: every matrix product is an sgemm).
import COpenBLAS

/// A linear layer stored as HF's nn.Linear: weight [N, K] (out, in), optional bias [N].
public struct Linear {
    public let weight: UnsafeMutablePointer<Float>   // [N, K]
    public let bias: UnsafeMutablePointer<Float>?    // [N]
    public let outFeatures: Int                      // N
    public let inFeatures: Int                       // K

    public init(weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>?, out: Int, in: Int) {
        self.weight = weight
        self.bias = bias
        outFeatures = out
        inFeatures = `in`
    }

    /// y [R, N] = x [R, K] · Wᵀ + b. `ldy` lets callers write into a column slice of a wider
    /// row (e.g. the q, k and v parts of one buffer).
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, ldy: Int? = nil) {
        affine(x, rows: rows, into: y, ldy: ldy ?? outFeatures, beta: 0)
    }

    /// y = x·Wᵀ + β·y. One row goes through sgemv: OpenBLAS 0.3.21 (Debian 12) does not route
    /// M = 1 sgemm to gemv, and measured here the 49152×576 LM head of SmolLM2 takes 20.3 ms as
    /// sgemm and 5.7 ms as sgemv (576×1536: 153 vs 149 µs).
    @inline(__always)
    func product(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, beta: Float) {
        if rows == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), 1, weight, Int32(inFeatures), x, 1, beta, y, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outFeatures), Int32(inFeatures),
                        1, x, Int32(inFeatures), weight, Int32(inFeatures), beta, y, Int32(ldy))
        }
    }

    /// y = x·Wᵀ + b + β·y (β 0: overwrite, 1: accumulate).
    @inline(__always)
    func affine(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, beta: Float) {
        guard rows > 0 else { return }
        product(x, rows: rows, into: y, ldy: ldy, beta: beta)
        if let bias {
            for r in 0..<rows {
                let row = y + r * ldy
                for n in 0..<outFeatures { row[n] += bias[n] }
            }
        }
    }

    /// dx [R, K] (+)= dy [R, N] · W. Backward of `forward` with respect to its input.
    public func backwardInput(_ dy: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool = false, lddy: Int? = nil) {
        guard rows > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(inFeatures), Int32(outFeatures),
                    1, dy, Int32(lddy ?? outFeatures), weight, Int32(inFeatures), accumulate ? 1 : 0, dx, Int32(inFeatures))
    }
}

extension Linear {
    /// y [R, N] += x [R, K] · Wᵀ + b: a residual branch added straight into the stream
    /// (one sgemm with β = 1 instead of a temporary and an add).
    public func forwardAccumulate(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        affine(x, rows: rows, into: y, ldy: outFeatures, beta: 1)
    }
}
