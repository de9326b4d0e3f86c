// One rank's running sums of per-sample scores, kept per bucket so the root can rebuild any prefix.
import Foundation

/// Exact sums of [L·J] score vectors in numbered buckets. The Coordinator decides what a bucket
/// is (for Appendix E: a range of positions within half a or b, so the sum over the first n
/// samples of a half is a sum of whole buckets and needs no second pass over the data).
/// Buckets are `ExactAccumulator`s, so reducing them over ranks in any order gives the same bits.
public struct ScoreAccumulator: Sendable, Equatable {
    public let scoreCount: Int
    public private(set) var buckets: [ExactAccumulator]

    public init(scoreCount: Int, buckets: Int) {
        self.scoreCount = scoreCount
        self.buckets = (0..<buckets).map { _ in ExactAccumulator(count: scoreCount) }
    }

    public mutating func add(_ scores: [Double], bucket: Int) throws {
        precondition(buckets.indices.contains(bucket), "internal: bucket \(bucket) of \(buckets.count)")
        try buckets[bucket].add(scores)
    }

    /// The limbs of every bucket followed by the bucket counts: one Int64 array for MPI_SUM.
    public func flattened() -> [Int64] {
        var out: [Int64] = []
        out.reserveCapacity(buckets.count * (3 * scoreCount + 1))
        for b in buckets { out.append(contentsOf: b.limbs) }
        for b in buckets { out.append(b.additions) }
        return out
    }

    /// Rebuilds from `flattened()` output (for example after summing it over ranks).
    public init(scoreCount: Int, flattened: [Int64]) {
        let n = flattened.count / (3 * scoreCount + 1)
        precondition(n * (3 * scoreCount + 1) == flattened.count, "internal: flattened size")
        self.scoreCount = scoreCount
        buckets = (0..<n).map { i in
            ExactAccumulator(count: scoreCount,
                             limbs: Array(flattened[(i * 3 * scoreCount)..<((i + 1) * 3 * scoreCount)]),
                             additions: flattened[n * 3 * scoreCount + i])
        }
    }

    /// Adds another accumulator's sums into bucket `i` (merging checkpoints).
    public mutating func mergeBucket(_ i: Int, _ other: ExactAccumulator) { buckets[i].merge(other) }

    /// The exact sum of the given buckets.
    public func merged(_ indices: some Sequence<Int>) -> ExactAccumulator {
        var total = ExactAccumulator(count: scoreCount)
        for i in indices { total.merge(buckets[i]) }
        return total
    }
}
