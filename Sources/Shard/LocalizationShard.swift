// One rank's share of a localization run: attribute its samples, accumulate, report progress.
import Engine
import Foundation

/// A sample as a rank receives it: tokens, where it came from, and the bucket its score joins.
public struct ShardSample: Codable, Sendable, Equatable {
    /// Position in the dataset (0-based) and its line in the data file (1-based).
    public var index: Int
    public var line: Int
    public var prompt: [Int]
    public var answer: [Int]
    public var bucket: Int

    public init(index: Int, line: Int, prompt: [Int], answer: [Int], bucket: Int) {
        self.index = index; self.line = line; self.prompt = prompt; self.answer = answer; self.bucket = bucket
    }
}

/// What one rank did: for the report's timings and strong-scaling numbers.
public struct ShardStatistics: Codable, Sendable, Equatable {
    public var samples: Int
    public var answerTokens: Int
    public var rows: Int
    public var flops: Double
    public var seconds: Double

    public init(samples: Int = 0, answerTokens: Int = 0, rows: Int = 0, flops: Double = 0, seconds: Double = 0) {
        self.samples = samples; self.answerTokens = answerTokens; self.rows = rows; self.flops = flops; self.seconds = seconds
    }
}

/// A sample whose attribution failed, with where it came from.
public struct ShardSampleError: Error, LocalizedError {
    public let sample: ShardSample
    public let rank: Int
    public let underlying: Error
    public var errorDescription: String? {
        "rank \(rank), sample \(sample.index) (data line \(sample.line)): \(underlying.localizedDescription)"
    }
}

public enum LocalizationShard {
    /// MPI tag of progress messages (a rank's cumulative count of finished samples).
    static let progressTag: Int32 = 7301

    /// Attributes `samples` in order and commits each score to `keeper` (sums, store,
    /// checkpoints). Non-root ranks post their count after every sample; the root folds those
    /// in between its own samples and, once done, waits for everybody's last message, so
    /// `progress` sees all ranks. Every rank must call this; each ends with a checkpoint.
    public static func run(mpi: MPIContext, attributor: SampleStreamAttributor, samples: [ShardSample], keeper: CheckpointKeeper,
                           totalSamples: Int, progress: ProgressReporter?) throws -> ShardStatistics {
        var stats = ShardStatistics(samples: 0, answerTokens: 0, rows: 0, flops: 0, seconds: 0)
        var doneByRank = [Int](repeating: 0, count: mpi.size)
        let isRoot = mpi.rank == 0
        func drain(wait: Bool) throws {
            while let (source, value) = try mpi.receiveValue(tag: progressTag, wait: wait) {
                doneByRank[source] = Int(value)
                progress?.update(done: doneByRank.reduce(0, +))
                if wait { return }
            }
        }
        let start = Date()
        progress?.update(done: 0)
        var current = 0
        do {
            try attributor.attribute(samples: samples.map { ($0.prompt, $0.answer) }) { i, result in
                current = i
                let sample = samples[i]
                try keeper.commit(index: sample.index, bucket: sample.bucket, scores: result.scores)
                stats.answerTokens += result.answerTokens
                stats.rows += result.rows
                stats.flops += result.flops
                stats.samples += 1
                if isRoot {
                    doneByRank[0] = stats.samples
                    progress?.update(done: doneByRank.reduce(0, +))
                    try drain(wait: false)
                } else {
                    try mpi.postValue(Int64(stats.samples), to: 0, tag: progressTag)
                }
            }
        } catch let failure as SampleAttributionFailure {
            throw ShardSampleError(sample: samples[failure.index], rank: mpi.rank, underlying: failure.underlying)
        } catch {
            throw ShardSampleError(sample: samples[current], rank: mpi.rank, underlying: error)
        }
        try keeper.write()
        stats.seconds = Date().timeIntervalSince(start)
        if isRoot {
            while doneByRank.reduce(0, +) < totalSamples { try drain(wait: true) }
        } else {
            try mpi.completePendingSends()
        }
        return stats
    }
}
