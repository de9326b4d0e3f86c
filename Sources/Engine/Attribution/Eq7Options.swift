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
    }

    /// S: the integrand is evaluated at α = n/S, n = 0..S (paper: 19, i.e. 20 points).
    public var steps: Int = 19
    public var normalization: Normalization = .paper
    /// Keep at most this many answer tokens (the first ones), or all when nil.
    public var maxAnswerTokens: Int? = nil
    /// Rows (m, l, n) processed together; bounds memory (tapes and logits grow with it).
    public var rowBudget: Int = 600

    public init(steps: Int = 19, normalization: Normalization = .paper, maxAnswerTokens: Int? = nil, rowBudget: Int = 600) {
        self.steps = steps; self.normalization = normalization
        self.maxAnswerTokens = maxAnswerTokens; self.rowBudget = rowBudget
    }

    /// Weight of point n in the sum (the 1/S, 1/(S+1) or trapezoid factor).
    public func weight(point n: Int) -> Double {
        let s = Double(steps)
        switch normalization {
        case .paper: return 1 / s
        case .points: return 1 / (s + 1)
        case .trapezoid: return (n == 0 || n == steps ? 0.5 : 1) / s
        }
    }

    public func validate() throws {
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
    /// P_m(1) (the clean probability of y_m) and P_m(0) (layer l's ω zeroed) per (m, l): [Y, L].
    public var probabilityClean: [Double]
    public var probabilityZero: [Double]
    /// Rows (m, l, n) computed.
    public var rows: Int
    /// Floating-point operations of the matrix products (counted, not measured).
    public var flops: Double
    /// Largest tape + logits memory of one chunk of rows, in bytes.
    public var peakChunkBytes: Int
}
