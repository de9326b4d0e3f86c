// Eq. 8: the σ mask over all L·J scores (SPEC "Eq. 8: the mask").
import Foundation

/// How far from the mean a score must be, in units of the scores' spread.
public enum Spread: String, Codable, Sendable, CaseIterable {
    /// Population standard deviation (default: the paper's reported 0.1–0.3 % neuron fractions).
    case std
    /// The literal Eq. 8: the variance (with scores ≪ 1 it is tiny and flags most neurons).
    case variance = "var"
}

/// The located neurons of one score vector: Mask(l, j) = 1 iff |Score(l, j) − mean| > σ·spread.
public struct NeuronMask: Sendable, Equatable {
    public let layers: Int
    public let ffnWidth: Int
    /// Flat indices l·J + j of the located neurons, ascending.
    public let located: [Int]
    public let mean: Double
    public let spread: Double
    public let sigma: Double

    public var count: Int { located.count }
    /// Eq. 9's "neuron": the located fraction of all L·J neurons.
    public var fraction: Double { Double(located.count) / Double(layers * ffnWidth) }

    /// Mask of `scores` ([L, J] row-major). Mean and spread are accumulated in Double in index
    /// order, so the mask depends on the scores only.
    public init(scores: [Double], layers: Int, ffnWidth: Int, sigma: Double, spread kind: Spread = .std) {
        precondition(scores.count == layers * ffnWidth && !scores.isEmpty, "internal: scores must be [L, J]")
        let n = Double(scores.count)
        var sum = 0.0
        for s in scores { sum += s }
        let mean = sum / n
        var sq = 0.0
        for s in scores { sq += (s - mean) * (s - mean) }
        let variance = sq / n
        let spread = kind == .std ? variance.squareRoot() : variance
        self.layers = layers
        self.ffnWidth = ffnWidth
        self.mean = mean
        self.spread = spread
        self.sigma = sigma
        let threshold = sigma * spread
        located = scores.indices.filter { abs(scores[$0] - mean) > threshold }
    }

    /// (layer, index) of each located neuron.
    public var neurons: [(layer: Int, index: Int)] { located.map { ($0 / ffnWidth, $0 % ffnWidth) } }
}
