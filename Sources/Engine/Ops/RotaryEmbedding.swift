// Rotary position embedding: Llama's rotate_half layout and GPT-J's rotate_every_two layout.
import Foundation

/// Rotates each (paired) coordinate of the first P dims of every head by angle pos·θᵢ.
/// θ, the angles and their cos/sin are computed in float32 from float32 operands, exactly as
/// HF's LlamaRotaryEmbedding and GPT-J's create_sinusoidal_positions do.
public struct RotaryEmbedding: Sendable {
    public enum Layout: Sendable {
        /// Pairs (i, i + P/2): HF's rotate_half (Llama, GPT-NeoX).
        case halves
        /// Pairs (2i, 2i + 1): HF's rotate_every_two (GPT-J).
        case interleaved
    }

    public enum Scaling: Sendable, Equatable {
        case none
        /// θᵢ / factor (HF "linear").
        case linear(factor: Float)
        /// Base grows with the sequence beyond the trained context (HF "dynamic" NTK).
        case dynamic(factor: Float, originalContext: Int)
        /// Llama 3.1's frequency-dependent interpolation (HF "llama3").
        case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalContext: Int)
    }

    public let layout: Layout
    public let rotaryDim: Int      // P (≤ E)
    public let headDim: Int        // E
    public let base: Float
    public let scaling: Scaling

    public init(layout: Layout, rotaryDim: Int, headDim: Int, base: Float, scaling: Scaling = .none) {
        self.layout = layout; self.rotaryDim = rotaryDim; self.headDim = headDim
        self.base = base; self.scaling = scaling
    }

    /// θ [P/2] for a sequence whose largest position is `maxPosition`.
    public func inverseFrequencies(maxPosition: Int) -> [Float] {
        let half = rotaryDim / 2
        var b = base
        if case let .dynamic(factor, original) = scaling, maxPosition + 1 > original {
            // HF _compute_dynamic_ntk_parameters: base · ((f·len/orig) − (f − 1))^(P/(P−2)).
            let len = Float(maxPosition + 1)
            let x = (factor * len / Float(original)) - (factor - 1)
            b = base * Float(pow(Double(x), Double(rotaryDim) / Double(rotaryDim - 2)))
        }
        var inv = (0..<half).map { i -> Float in
            let exponent = Float(2 * i) / Float(rotaryDim)
            return 1 / Float(pow(Double(b), Double(exponent)))
        }
        switch scaling {
        case .none, .dynamic: break
        case let .linear(factor):
            inv = inv.map { $0 / factor }
        case let .llama3(factor, low, high, original):
            let lowWavelen = Float(original) / low
            let highWavelen = Float(original) / high
            inv = inv.map { f in
                let wavelen = 2 * Float.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Float(original) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return inv
    }

    /// cos and sin [T, P/2] for the given positions.
    public func table(positions: [Int]) -> (cos: [Float], sin: [Float]) {
        let half = rotaryDim / 2
        let inv = inverseFrequencies(maxPosition: positions.max() ?? 0)
        var c = [Float](repeating: 0, count: positions.count * half)
        var s = c
        for (t, p) in positions.enumerated() {
            for i in 0..<half {
                let angle = Float(p) * inv[i]           // float32 product, as HF
                c[t * half + i] = Float(Foundation.cos(Double(angle)))
                s[t * half + i] = Float(Foundation.sin(Double(angle)))
            }
        }
        return (c, s)
    }

    /// Rotates `heads` vectors of one position in place: x [heads, E]; cos, sin [P/2].
    /// With `inverse` it applies the transposed rotation (the backward of the forward).
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, inverse: Bool = false) {
        let half = rotaryDim / 2
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<half {
                let (a, b) = layout == .halves ? (i, i + half) : (2 * i, 2 * i + 1)
                let c = cos[i], s = inverse ? -sin[i] : sin[i]
                let x0 = v[a], x1 = v[b]
                v[a] = x0 * c - x1 * s
                v[b] = x1 * c + x0 * s
            }
        }
    }
}

