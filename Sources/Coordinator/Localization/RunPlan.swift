// The root's plan of a run: a/b split, Appendix E buckets, and which rank attributes which sample.
import Engine
import Foundation
import Shard

/// Where each sample's score goes and who computes it. Built on the root from the tokenized
/// dataset and broadcast; nothing in it depends on the rank count except `assignment`, and the
/// reduction is exact, so the scores do not depend on it either.
public struct RunPlan: Codable, Sendable, Equatable {
    /// Appendix E sizes n (each at most the smaller half).
    public var grid: [Int]
    public var sizeA: Int
    public var sizeB: Int
    /// Buckets per half: positions [0, grid[0]), [grid[0], grid[1]), …, [grid.last, half size).
    public var bucketsPerHalf: Int { grid.count + 1 }
    public var bucketCount: Int { 2 * bucketsPerHalf }
    /// Static assignment: the samples of each rank, in the order it attributes them. Dynamic
    /// assignment: one queue, costliest first, that the ranks take samples from as they finish.
    public var assignment: [[ShardSample]]
    /// Estimated cost (arbitrary units) per rank, for the report (dynamic: known once the run
    /// has handed the queue out, so empty here).
    public var estimatedCost: [Double]

    public var sampleCount: Int { sizeA + sizeB }

    /// Buckets of half `half` whose positions are below grid point k (k = grid.count: the whole half).
    public func buckets(of half: ABSplit.Half, throughGridPoint k: Int) -> Range<Int> {
        let base = half == .a ? 0 : bucketsPerHalf
        return base..<(base + k + 1)
    }

    public func bucket(half: ABSplit.Half, position: Int) -> Int {
        let k = grid.firstIndex(where: { position < $0 }) ?? grid.count
        return (half == .a ? 0 : bucketsPerHalf) + k
    }

    /// Splits, buckets and assigns `samples` (already tokenized and checked) to `ranks` ranks;
    /// the split and buckets cover every sample, the assignment only those not `finished`.
    public static func make(samples: [TokenizedSample], ranks: Int, seed: UInt64, grid requested: [Int]?,
                            layers: Int, steps: Int, maxAnswerTokens: Int?, dataPath: String,
                            finished: Set<Int> = []) throws -> RunPlan {
        var (plan, bucketed) = try layout(samples: samples, ranks: ranks, seed: seed, grid: requested, dataPath: dataPath)
        plan.assign(bucketed, ranks: ranks, layers: layers, steps: steps, maxAnswerTokens: maxAnswerTokens, finished: finished)
        return plan
    }

    /// The split and the buckets of every sample, nothing assigned yet: all that a checkpoint is
    /// matched against (the grid and bucket count), before anyone knows which samples are done.
    /// Refuses too few samples for the split or for `ranks`, and grid sizes beyond a half.
    public static func layout(samples: [TokenizedSample], ranks: Int, seed: UInt64, grid requested: [Int]?,
                              dataPath: String) throws -> (plan: RunPlan, samples: [ShardSample]) {
        guard samples.count >= 2 else { throw PlanError.tooFewForSplit(path: dataPath, samples: samples.count) }
        guard samples.count >= ranks else { throw PlanError.fewerSamplesThanRanks(path: dataPath, samples: samples.count, ranks: ranks) }
        let split = ABSplit(count: samples.count, seed: seed)
        let sizeA = split.a.count, sizeB = split.b.count
        let grid: [Int]
        if let requested {
            if let n = requested.first(where: { $0 > sizeB }) {
                throw PlanError.gridTooLarge(n: n, half: sizeB)
            }
            grid = requested
        } else {
            grid = ConvergenceGrid.doubling(halfSize: sizeB)
        }
        let plan = RunPlan(grid: grid, sizeA: sizeA, sizeB: sizeB, assignment: [], estimatedCost: [])
        let placement = split.placement()
        let bucketed = samples.map { s in
            ShardSample(index: s.index, line: s.line, prompt: s.prompt, answer: s.answer,
                        bucket: plan.bucket(half: placement[s.index].half, position: placement[s.index].rank))
        }
        return (plan, bucketed)
    }

    /// A sample's estimated cost (arbitrary units).
    public static func cost(_ s: ShardSample, layers: Int, steps: Int, maxAnswerTokens: Int?) -> Double {
        let y = Double(maxAnswerTokens.map { min($0, s.answer.count) } ?? s.answer.count)
        let length = Double(s.prompt.count) + y
        // Rows (m, l, n) dominate; each is a single-token pass whose attention grows with
        // the prefix; the clean pass costs about one row per position.
        return y * Double(layers * (steps + 1)) * (1 + length / 1000) + length
    }

    /// Hands the samples not `finished` to `ranks` ranks, balancing their estimated cost; with
    /// `dynamic`, lays them out as one queue (costliest first) for the ranks to take from.
    public mutating func assign(_ samples: [ShardSample], ranks: Int, layers: Int, steps: Int, maxAnswerTokens: Int?,
                                finished: Set<Int>, dynamic: Bool = false) {
        // Longest processing time first: each sample, costliest first, goes to the rank with the
        // least work so far (ties: lower sample index, lower rank), so the plan is reproducible.
        // Dynamic assignment takes the same order: the long samples go out first, and the short
        // ones at the end even out the ranks' finishing times.
        func cost(_ s: ShardSample) -> Double { Self.cost(s, layers: layers, steps: steps, maxAnswerTokens: maxAnswerTokens) }
        // Samples that earlier jobs finished (in a checkpoint) keep their bucket but get no rank.
        let order = samples.indices.filter { !finished.contains(samples[$0].index) }.sorted { i, j in
            let (ci, cj) = (cost(samples[i]), cost(samples[j]))
            return ci != cj ? ci > cj : i < j
        }
        if dynamic {
            assignment = [order.map { samples[$0] }]
            estimatedCost = []
            return
        }
        var load = [Double](repeating: 0, count: ranks)
        var assigned = [[ShardSample]](repeating: [], count: ranks)
        for i in order {
            let r = load.indices.min { load[$0] != load[$1] ? load[$0] < load[$1] : $0 < $1 }!
            load[r] += cost(samples[i])
            assigned[r].append(samples[i])
        }
        assignment = assigned.map { $0.sorted { $0.index < $1.index } }
        estimatedCost = load
    }
}

public enum PlanError: Error, LocalizedError, Equatable {
    case tooFewForSplit(path: String, samples: Int)
    case fewerSamplesThanRanks(path: String, samples: Int, ranks: Int)
    case gridTooLarge(n: Int, half: Int)

    public var errorDescription: String? {
        switch self {
        case let .tooFewForSplit(path, n):
            return "\(path): \(n) sample(s); the a/b split of Eq. 9 needs at least 2 (raise dataset.limit or use a larger file)"
        case let .fewerSamplesThanRanks(path, n, ranks):
            return "\(path): \(n) samples for \(ranks) ranks; every rank needs at least one sample (use fewer ranks or more samples)"
        case let .gridTooLarge(n, half):
            return "config 'convergence_grid': size \(n) exceeds the smaller half (\(half) samples); use sizes up to \(half)"
        }
    }
}
