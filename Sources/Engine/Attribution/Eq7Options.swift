// Options of the Eq. 7 attribution (SPEC "Eq. 7, term by term") and the per-sample result.
import Foundation

public struct AttributionOptions: Sendable, Equatable, Codable {
    /// How the S + 1 integrand points are weighted.
    public enum Normalization: String, Sendable, Codable, CaseIterable {
        /// The paper's Eq. 7: (1/S)·Σ_{n=0..S}.
        case paper
        /// The knowledge-neuron code: divide by the number of points, S + 1.
        case points
        /// Trapezoid rule: end points weighted ½; attributions then add up to P(1) − P(0).
        case trapezoid
        /// Gauss–Legendre with `points` nodes on [0, 1] (SPEC "Quadrature"): not the paper's
        /// number but the same integral, computed more accurately from fewer rows.
        case gaussLegendre = "gauss-legendre"
    }

    /// S: the integrand is evaluated at α = n/S, n = 0..S (paper: 19, i.e. 20 points).
    public var steps: Int = 19
    public var normalization: Normalization = .paper
    /// Keep at most this many answer tokens (the first ones), or all when nil.
    public var maxAnswerTokens: Int? = nil
    /// Rows (m, l, n) processed together; bounds memory (tapes and logits grow with it).
    public var rowBudget: Int = 600
    /// K, the Gauss–Legendre node count (only with `.gaussLegendre`; `steps` is then unused).
    public var points: Int? = nil

    public init(steps: Int = 19, normalization: Normalization = .paper, maxAnswerTokens: Int? = nil, rowBudget: Int = 600,
                points: Int? = nil) {
        self.steps = steps; self.normalization = normalization
        self.maxAnswerTokens = maxAnswerTokens; self.rowBudget = rowBudget; self.points = points
    }

    /// The integrand points of one (m, l): α and the weight of ∂P/∂ω there. The paper's rules
    /// take α = n/S, n = 0..S, with weight 1/S, 1/(S+1) or the trapezoid's; Gauss–Legendre
    /// takes α_k = (1 + x_k)/2 with weight w_k/2.
    public func quadrature() -> [(alpha: Float, weight: Double)] {
        let s = Double(steps)
        switch normalization {
        case .paper: return (0...steps).map { (Float($0) / Float(steps), 1 / s) }
        case .points: return (0...steps).map { (Float($0) / Float(steps), 1 / (s + 1)) }
        case .trapezoid: return (0...steps).map { (Float($0) / Float(steps), ($0 == 0 || $0 == steps ? 0.5 : 1) / s) }
        case .gaussLegendre:
            return GaussLegendre.nodes(points ?? 6).map { (Float((1 + $0.x) / 2), $0.w / 2) }
        }
    }

    public func validate() throws {
        if normalization == .gaussLegendre {
            guard let k = points, (1...64).contains(k) else {
                throw AttributionError.badOption("gauss-legendre needs --points K with K in 1...64, got \(points.map(String.init) ?? "none")")
            }
        } else if let k = points {
            throw AttributionError.badOption("--points \(k) is the Gauss–Legendre node count; it needs --normalization gauss-legendre (got \(normalization.rawValue))")
        }
        guard steps >= 1 else { throw AttributionError.badOption("steps must be at least 1, got \(steps)") }
        guard rowBudget >= 1 else { throw AttributionError.badOption("row budget must be at least 1, got \(rowBudget)") }
        if let m = maxAnswerTokens, m < 1 { throw AttributionError.badOption("the answer-token cap must be at least 1, got \(m)") }
    }
}

public enum AttributionError: Error, LocalizedError, Equatable {
    case badOption(String)
    case emptyPrompt
    case emptyAnswer
    case tooLong(tokens: Int, context: Int)

    public var errorDescription: String? {
        switch self {
        case let .badOption(s): return s
        case .emptyPrompt: return "the prompt tokenizes to no tokens; Eq. 7 needs at least one prompt token"
        case .emptyAnswer: return "the answer tokenizes to no tokens; Eq. 7 needs at least one answer token"
        case let .tooLong(tokens, context):
            return "prompt + answer is \(tokens) tokens but the model's context is \(context); shorten the sample or cap answer tokens"
        }
    }
}

/// One sample's Eq. 7 score and what it cost.
public struct SampleAttribution: Sendable {
    /// score_i(l, j), [L, J] row-major: (1/Y)·Σ_m attr_m(l, j).
    public var scores: [Double]
    /// Y: answer tokens attributed (after the cap).
    public var answerTokens: Int
    /// P_m(1) (the clean probability of y_m, from the clean pass) and P_m(0) (layer l's ω
    /// zeroed) per (m, l): [Y, L]. P_m(0) is NaN under a rule without the point α = 0
    /// (Gauss–Legendre).
    public var probabilityClean: [Double]
    public var probabilityZero: [Double]
    /// Σ_j attr_m(l, j) per (m, l), [Y, L]: against P_m(1) − P_m(0), the completeness gap.
    public var attributionSums: [Double]
    /// Rows (m, l, n) computed.
    public var rows: Int
    /// Floating-point operations of the matrix products (counted, not measured).
    public var flops: Double
    /// Largest tape + logits memory of one chunk of rows, in bytes.
    public var peakChunkBytes: Int
}

/// Gauss–Legendre nodes x_k and weights w_k on [−1, 1]: Newton's method on P_K from the
/// usual first guesses cos(π(i − ¼)/(K + ½)), with P_K and P_K′ from the three-term
/// recurrence in Double; w_k = 2 / ((1 − x_k²)·P_K′(x_k)²).
public enum GaussLegendre {
    public static func nodes(_ k: Int) -> [(x: Double, w: Double)] {
        guard k >= 1 else { return [] }
        var out: [(x: Double, w: Double)] = []
        for i in 1...k {
            var x = cos(Double.pi * (Double(i) - 0.25) / (Double(k) + 0.5))
            for _ in 0..<100 {
                let (p, dp) = legendre(k, at: x)
                let step = p / dp
                x -= step
                if abs(step) < 1e-15 { break }
            }
            let dp = legendre(k, at: x).derivative
            out.append((x, 2 / ((1 - x * x) * dp * dp)))
        }
        return out.sorted { $0.x < $1.x }
    }

    /// P_k(x) and P_k′(x).
    static func legendre(_ k: Int, at x: Double) -> (value: Double, derivative: Double) {
        var (previous, current) = (1.0, x)
        if k >= 2 {
            for n in 2...k {
                (previous, current) = (current, ((2 * Double(n) - 1) * x * current - (Double(n) - 1) * previous) / Double(n))
            }
        }
        return (current, Double(k) * (x * current - previous) / (x * x - 1))
    }
}
