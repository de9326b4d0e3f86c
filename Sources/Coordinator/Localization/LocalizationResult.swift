// From the reduced bucket sums to the paper's numbers: Score, Score_a, Score_b, masks, Eq. 9, Appendix E.
import Foundation
import Shard

/// One mask's summary (Eq. 8) as the report lists it.
public struct MaskSummary: Codable, Sendable, Equatable {
    public var neurons: Int
    /// Eq. 9's "neuron": located / (L·J).
    public var fraction: Double
    public var mean: Double
    public var spread: Double
    public var threshold: Double

    init(_ m: NeuronMask) {
        neurons = m.count; fraction = m.fraction; mean = m.mean; spread = m.spread; threshold = m.sigma * m.spread
    }
}

/// Eq. 8 and Eq. 9 at one σ: the masks of the whole data, of a and of b, and their agreement.
public struct SigmaResult: Codable, Sendable, Equatable {
    public var sigma: Double
    public var whole: MaskSummary
    public var a: MaskSummary
    public var b: MaskSummary
    public var agreement: OverlapMetrics
}

/// One point of Appendix E: the first n samples of a and of b, located separately, compared.
public struct ConvergencePoint: Codable, Sendable, Equatable {
    public var sigma: Double
    public var n: Int
    public var agreement: OverlapMetrics
}

public struct LocalizationResult: Sendable {
    public let layers: Int
    public let ffnWidth: Int
    /// Means over the whole data set and over halves a and b, [L, J] row-major.
    public let score: [Double]
    public let scoreA: [Double]
    public let scoreB: [Double]
    public let masks: [(sigma: Double, whole: NeuronMask, a: NeuronMask, b: NeuronMask)]
    public let perSigma: [SigmaResult]
    public let convergence: [ConvergencePoint]

    /// `sums` must be the sums over every rank (bucket layout of `plan`).
    public init(sums: ScoreAccumulator, plan: RunPlan, sigmas: [Double], spread: Spread, layers: Int, ffnWidth: Int) throws {
        let G = plan.grid.count
        let sumA = sums.merged(plan.buckets(of: .a, throughGridPoint: G))
        let sumB = sums.merged(plan.buckets(of: .b, throughGridPoint: G))
        var sumAll = sumA
        sumAll.merge(sumB)
        guard sumA.additions == plan.sizeA, sumB.additions == plan.sizeB else {
            throw LocalizationError.lostSamples(expected: plan.sampleCount, got: Int(sumAll.additions))
        }
        self.layers = layers
        self.ffnWidth = ffnWidth
        score = sumAll.means()
        scoreA = sumA.means()
        scoreB = sumB.means()
        let mask = { (s: [Double], sigma: Double) -> NeuronMask in
            NeuronMask(scores: s, layers: layers, ffnWidth: ffnWidth, sigma: sigma, spread: spread)
        }
        let (all, meanA, meanB) = (score, scoreA, scoreB)
        let masks = sigmas.map { sigma in (sigma: sigma, whole: mask(all, sigma), a: mask(meanA, sigma), b: mask(meanB, sigma)) }
        self.masks = masks
        perSigma = masks.map { m in
            SigmaResult(sigma: m.sigma, whole: MaskSummary(m.whole), a: MaskSummary(m.a), b: MaskSummary(m.b), agreement: OverlapMetrics(m.a, m.b))
        }
        // Appendix E: prefixes are whole buckets, so each point is exact sums divided by n.
        var points: [ConvergencePoint] = []
        for (k, n) in plan.grid.enumerated() {
            let a = sums.merged(plan.buckets(of: .a, throughGridPoint: k))
            let b = sums.merged(plan.buckets(of: .b, throughGridPoint: k))
            guard a.additions == n, b.additions == n else {
                throw LocalizationError.lostSamples(expected: 2 * n, got: Int(a.additions + b.additions))
            }
            let (prefixA, prefixB) = (a.means(), b.means())
            for sigma in sigmas {
                points.append(ConvergencePoint(sigma: sigma, n: n, agreement: OverlapMetrics(mask(prefixA, sigma), mask(prefixB, sigma))))
            }
        }
        convergence = points
    }
}

public enum LocalizationError: Error, LocalizedError, Equatable {
    case lostSamples(expected: Int, got: Int)
    case finishedRun(directory: String)
    case failedOnAnotherRank
    case outputNotDirectory(path: String)
    case nothingToResume(directory: String)

    public var errorDescription: String? {
        switch self {
        case let .lostSamples(e, g): return "internal: the reduction counted \(g) samples, expected \(e); please report this"
        case let .finishedRun(d): return "\(d) already holds a finished run (report.json); choose another output or pass --force to overwrite it"
        case .failedOnAnotherRank: return "the run failed (see the error printed by rank 0)"
        case let .outputNotDirectory(p): return "\(p): the output path exists and is not a directory; choose another output"
        case let .nothingToResume(d): return "\(d): no checkpoint to resume from; run without --resume to start the run"
        }
    }
}
