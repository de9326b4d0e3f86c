// RMSNorm (Llama) and LayerNorm (GPT-2, GPT-J), row-wise over width D.
import Foundation

/// As HF's LlamaRMSNorm: y = w ⊙ x / sqrt(mean(x²) + ε), computed in float32 by HF; the mean
/// is accumulated here in Double (a rounding difference far below the parity tolerance).
public struct RMSNorm {
    public let weight: UnsafeMutablePointer<Float>   // [D]
    public let width: Int                            // D
    public let eps: Float

    public init(weight: UnsafeMutablePointer<Float>, width: Int, eps: Float) {
        self.weight = weight; self.width = width; self.eps = eps
    }

    /// y [R, D] from x [R, D]; `inverseRMS` [R] (if given) keeps 1/rms for the backward.
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, inverseRMS: UnsafeMutablePointer<Float>? = nil) {
        for r in 0..<rows {
            let xr = x + r * width, yr = y + r * width
            var ss: Double = 0
            for i in 0..<width { ss += Double(xr[i]) * Double(xr[i]) }
            let inv = Float(1 / (ss / Double(width) + Double(eps)).squareRoot())
            inverseRMS?[r] = inv
            for i in 0..<width { yr[i] = weight[i] * (xr[i] * inv) }
        }
    }

    /// dx [R, D] (+)= ∂y/∂x · dy, with s = 1/rms: dx = s·(w⊙dy) − s³/D · x · Σ(w⊙dy⊙x).
    public func backward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, inverseRMS: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        for r in 0..<rows {
            let dyr = dy + r * width, xr = x + r * width, dxr = dx + r * width
            let s = inverseRMS[r]
            var dot: Double = 0
            for i in 0..<width { dot += Double(weight[i] * dyr[i]) * Double(xr[i]) }
            let c = Float(dot) * s * s * s / Float(width)
            for i in 0..<width {
                let g = s * weight[i] * dyr[i] - c * xr[i]
                dxr[i] = accumulate ? dxr[i] + g : g
            }
        }
    }
}

/// As torch.nn.LayerNorm: y = (x − mean)/sqrt(var + ε) ⊙ w + b, population variance.
public struct LayerNorm {
    public let weight: UnsafeMutablePointer<Float>   // [D]
    public let bias: UnsafeMutablePointer<Float>     // [D]
    public let width: Int                            // D
    public let eps: Float

    public init(weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>, width: Int, eps: Float) {
        self.weight = weight; self.bias = bias; self.width = width; self.eps = eps
    }

    /// y [R, D] from x [R, D]; `stats` [R, 2] (if given) keeps (mean, 1/σ) for the backward.
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, stats: UnsafeMutablePointer<Float>? = nil) {
        for r in 0..<rows {
            let xr = x + r * width, yr = y + r * width
            var s: Double = 0
            for i in 0..<width { s += Double(xr[i]) }
            let mean = s / Double(width)
            var v: Double = 0
            for i in 0..<width { let d = Double(xr[i]) - mean; v += d * d }
            let inv = Float(1 / (v / Double(width) + Double(eps)).squareRoot())
            let m = Float(mean)
            if let stats { stats[2 * r] = m; stats[2 * r + 1] = inv }
            for i in 0..<width { yr[i] = (xr[i] - m) * inv * weight[i] + bias[i] }
        }
    }

    /// dx [R, D] (+)= ∂y/∂x · dy: with x̂ = (x−μ)/σ and g = w⊙dy,
    /// dx = (1/σ)·(g − mean(g) − x̂·mean(g⊙x̂)).
    public func backward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, stats: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        for r in 0..<rows {
            let dyr = dy + r * width, xr = x + r * width, dxr = dx + r * width
            let m = stats[2 * r], inv = stats[2 * r + 1]
            var sg: Double = 0, sgx: Double = 0
            for i in 0..<width {
                let g = Double(weight[i] * dyr[i])
                sg += g
                sgx += g * Double((xr[i] - m) * inv)
            }
            let mg = Float(sg / Double(width)), mgx = Float(sgx / Double(width))
            for i in 0..<width {
                let xh = (xr[i] - m) * inv
                let d = inv * (weight[i] * dyr[i] - mg - xh * mgx)
                dxr[i] = accumulate ? dxr[i] + d : d
            }
        }
    }
}
