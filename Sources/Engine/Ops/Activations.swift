// FFN non-linearities and their derivatives, element-wise (forward beside backward).
import Foundation

public enum Activation: String, Sendable {
    /// GPT-2/GPT-J's "gelu_new" (also "gelu_pytorch_tanh"): 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))).
    case geluTanh
    /// Exact GELU, x·Φ(x) (HF "gelu").
    case geluErf
    /// x·σ(x) (HF "silu", Llama).
    case silu
    case relu

    /// HF `hidden_act` / `activation_function` names → activation.
    public init?(hfName: String) {
        switch hfName {
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": self = .geluTanh
        case "gelu": self = .geluErf
        case "silu", "swish": self = .silu
        case "relu": self = .relu
        default: return nil
        }
    }

    @inline(__always) public func apply(_ x: Float) -> Float {
        switch self {
        case .geluTanh:
            let k: Float = 0.7978845608028654 // √(2/π)
            return 0.5 * x * (1 + tanh(k * (x + 0.044715 * x * x * x)))
        case .geluErf:
            return 0.5 * x * (1 + erf(x * 0.7071067811865476))
        case .silu:
            return x / (1 + exp(-x))
        case .relu:
            return max(x, 0)
        }
    }

    /// d apply / dx.
    @inline(__always) public func derivative(_ x: Float) -> Float {
        switch self {
        case .geluTanh:
            let k: Float = 0.7978845608028654
            let u = k * (x + 0.044715 * x * x * x)
            let t = tanh(u)
            return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
        case .geluErf:
            let cdf = 0.5 * (1 + erf(x * 0.7071067811865476))
            let pdf = exp(-0.5 * x * x) * 0.3989422804014327
            return cdf + x * pdf
        case .silu:
            let s = 1 / (1 + exp(-x))
            return s * (1 + x * (1 - s))
        case .relu:
            return x > 0 ? 1 : 0
        }
    }

    public func forward(_ x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>) {
        for i in 0..<count { y[i] = apply(x[i]) }
    }

    /// hidden = act(ω) ⊙ u (SwiGLU-style gates); SiLU takes the eight-lane path.
    public func gate(_ omega: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int, into hidden: UnsafeMutablePointer<Float>) {
        if self == .silu { return VectorMath.siluGate(omega, up: up, count: count, into: hidden) }
        for i in 0..<count { hidden[i] = apply(omega[i]) * up[i] }
    }

    /// Backward of `gate`: dω = d ⊙ u ⊙ act′(ω) and, when dUp is given, du = d ⊙ act(ω).
    public func gateBackward(_ d: UnsafePointer<Float>, omega: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int,
                             dOmega: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>?) {
        if self == .silu { return VectorMath.siluGateBackward(d, omega: omega, up: up, count: count, dOmega: dOmega, dUp: dUp) }
        for i in 0..<count {
            dOmega[i] = d[i] * up[i] * derivative(omega[i])
            dUp?[i] = d[i] * apply(omega[i])
        }
    }

    /// dx = dy ⊙ act′(x).
    public func backward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, count: Int, into dx: UnsafeMutablePointer<Float>) {
        for i in 0..<count { dx[i] = dy[i] * derivative(x[i]) }
    }
}
