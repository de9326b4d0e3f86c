// Eight-lane exp, SiLU and the softmax-probability gradient: the element-wise work of a row batch.
import Foundation

typealias Float8 = SIMD8<Float>

/// e^x for eight lanes: Cody–Waite reduction x = n·ln2 + r, a degree-6 polynomial for e^r on
/// |r| ≤ ln2/2 (Cephes' expf coefficients), 2^n from the exponent bits. Relative error ≤ 1.2e-7
/// (1 ulp) against expf over [−87, 88]; x < −87 gives 0 (expf: a subnormal or 0), x > 88 is
/// clamped (never reached here: softmax arguments are ≤ 0, SiLU's are −ω of a real model).
/// Why: libm's expf is one call per element; this is 1.5× faster without AVX, and the
/// softmax over 49,152 logits per row and SiLU's three exps per neuron per row add up.
@inline(__always) func exp8(_ x0: Float8) -> Float8 {
    // (replace(with:where:) rather than clamped: the generic pointwiseMin/Max are not inlined.)
    var x = x0
    x.replace(with: -87, where: x .< -87)
    x.replace(with: 88, where: x .> 88)
    let shifter = Float8(repeating: 12_582_912)          // 1.5·2^23: adding it rounds to an integer
    let t = x * 1.442_695_040_888_963_4 + shifter
    let n = unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let fx = t - shifter
    var r = x - fx * 0.693_359_375
    r = r - fx * -2.121_944_40e-4
    var p = Float8(repeating: 1.987_569_150_0e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    var y = (p * (r * r) + r + 1) * unsafeBitCast((n &+ 127) &<< 23, to: Float8.self)
    y.replace(with: 0, where: x0 .< -87)
    return y
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> Float8 { UnsafeRawPointer(p).loadUnaligned(as: Float8.self) }
@inline(__always) func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self) }

public enum VectorMath {
    /// hidden = silu(ω) ⊙ u, silu(x) = x/(1 + e^{−x}).
    public static func siluGate(_ omega: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int, into hidden: UnsafeMutablePointer<Float>) {
        var i = 0
        while i + 8 <= count {
            let x = load8(omega + i)
            store8(x / (1 + exp8(-x)) * load8(up + i), hidden + i)
            i += 8
        }
        while i < count { hidden[i] = Activation.silu.apply(omega[i]) * up[i]; i += 1 }
    }

    /// dω = d ⊙ u ⊙ silu′(ω) and (when dUp is given) du = d ⊙ silu(ω), silu′ = s(1 + x(1 − s)).
    public static func siluGateBackward(_ d: UnsafePointer<Float>, omega: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                                        dOmega: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>?) {
        var i = 0
        while i + 8 <= count {
            let x = load8(omega + i), g = load8(d + i)
            let s = 1 / (1 + exp8(-x))
            store8(g * load8(up + i) * (s * (1 + x * (1 - s))), dOmega + i)
            if let dUp { store8(g * (x * s), dUp + i) }
            i += 8
        }
        while i < count {
            dOmega[i] = d[i] * up[i] * Activation.silu.derivative(omega[i])
            dUp?[i] = d[i] * Activation.silu.apply(omega[i])
            i += 1
        }
    }

    /// z ← e^(z − max z) in place, eight lanes at a time; returns Σ e^(z − max z), summed in
    /// Double from eight-lane Float partial sums of 512 elements (a Float running sum over a
    /// 49,152-word vocabulary drifts by ~1e-4 relative). The first two passes of a softmax.
    static func exponentiateShifted(_ z: UnsafeMutablePointer<Float>, count n: Int) -> Double {
        var m8 = Float8(repeating: -.infinity)
        var i = 0
        while i + 8 <= n { let v = load8(z + i); m8.replace(with: v, where: v .> m8); i += 8 }
        var m = m8.max()
        while i < n { m = max(m, z[i]); i += 1 }
        var sum = 0.0
        i = 0
        while i + 8 <= n {
            var part = Float8(repeating: 0)
            let end = min(n - n % 8, i + 512)
            while i < end {
                let e = exp8(load8(z + i) - m)
                store8(e, z + i)
                part += e
                i += 8
            }
            sum += Double(part.sum())
        }
        while i < n { let e = expf(z[i] - m); z[i] = e; sum += Double(e); i += 1 }
        return sum
    }

    /// z [V] ← ∂P/∂z for P = softmax(z)[y], i.e. P·(e_y − softmax(z)), in two passes that stay
    /// in cache (max; then exp with the sum; then one scale). Returns P.
    public static func probabilityGradient(_ z: UnsafeMutablePointer<Float>, count n: Int, target y: Int) -> Float {
        let sum = exponentiateShifted(z, count: n)
        let p = Float(Double(z[y]) / sum)
        let scale = Float(-Double(p) / sum)
        var i = 0
        while i + 8 <= n { store8(load8(z + i) * scale, z + i); i += 8 }
        while i < n { z[i] *= scale; i += 1 }
        z[y] += p
        return p
    }
}
