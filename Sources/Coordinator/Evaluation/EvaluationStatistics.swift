// Accuracy with its Wilson 95 % interval, a mean with its standard error (SPEC "Evaluating a capability").
import Foundation

public struct EvaluationStatistics: Codable, Sendable, Equatable {
    public var samples: Int
    public var correct: Int
    public var accuracy: Double
    /// Wilson score interval at 95 % (z = 1.959964): unlike p ± z·√(p(1−p)/n) it stays inside
    /// [0, 1] and is not empty at p = 0, which GSM8K on a small model reaches.
    public var accuracyLow: Double
    public var accuracyHigh: Double
    /// Mean over samples of the gold answer's (1/Y)·Σ_m log P(y_m | z_m).
    public var logLikelihood: Double
    /// Its standard error, sample standard deviation / √n (0 for one sample).
    public var logLikelihoodSE: Double

    enum CodingKeys: String, CodingKey {
        case samples, correct, accuracy, accuracyLow = "accuracy_wilson95_low", accuracyHigh = "accuracy_wilson95_high"
        case logLikelihood = "log_likelihood", logLikelihoodSE = "log_likelihood_se"
    }

    static let z = 1.959963984540054

    /// Sums in sample order (the outcomes come sorted by sample index), so the numbers depend
    /// on the outcomes only, never on the rank count.
    public init(correct flags: [Bool], logLikelihoods: [Double]) {
        let n = flags.count
        samples = n
        correct = flags.filter { $0 }.count
        (accuracy, accuracyLow, accuracyHigh) = Self.wilson(correct: correct, of: n)
        var sum = 0.0
        for v in logLikelihoods { sum += v }
        let mean = n > 0 ? sum / Double(n) : 0
        var sq = 0.0
        for v in logLikelihoods { sq += (v - mean) * (v - mean) }
        logLikelihood = mean
        logLikelihoodSE = n > 1 ? (sq / Double(n - 1)).squareRoot() / Double(n).squareRoot() : 0
    }

    /// (p̂, low, high) of the Wilson interval for k successes in n trials.
    public static func wilson(correct k: Int, of n: Int) -> (Double, Double, Double) {
        guard n > 0 else { return (0, 0, 1) }
        let nn = Double(n), p = Double(k) / nn, z2 = z * z
        let centre = (p + z2 / (2 * nn)) / (1 + z2 / nn)
        let half = z * (p * (1 - p) / nn + z2 / (4 * nn * nn)).squareRoot() / (1 + z2 / nn)
        return (p, max(0, centre - half), min(1, centre + half))
    }
}
