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

    /// Counts one attributed sample.
    mutating func record(_ result: SampleAttribution) {
        answerTokens += result.answerTokens
        rows += result.rows
        flops += result.flops
        samples += 1
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

    /// Straggler injection for scripts/bench-stragglers.sh: CNL_TEST_SLOW_RANK=r:k makes rank r
    /// take k times as long per sample (it sleeps k − 1 times each sample's time after it), as
    /// a slower or busier node would, without taking CPU from the other ranks.
    static let slowRank: (rank: Int, factor: Double)? = {
        guard let v = ProcessInfo.processInfo.environment["CNL_TEST_SLOW_RANK"] else { return nil }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let r = Int(parts[0]), let k = Double(parts[1]), k >= 1 else { return nil }
        return (r, k)
    }()

    static func straggle(rank: Int, sampleStart: Date) {
        guard let slow = slowRank, slow.rank == rank else { return }
        usleep(useconds_t(max(0, Date().timeIntervalSince(sampleStart) * (slow.factor - 1)) * 1e6))
    }

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
        var sampleStart = Date()
        do {
            try attributor.attribute(samples: samples.map { ($0.prompt, $0.answer) }) { i, result in
                current = i
                let sample = samples[i]
                straggle(rank: mpi.rank, sampleStart: sampleStart)
                try keeper.commit(index: sample.index, bucket: sample.bucket, scores: result.scores)
                stats.record(result)
                if isRoot {
                    doneByRank[0] = stats.samples
                    progress?.update(done: doneByRank.reduce(0, +))
                    try drain(wait: false)
                } else {
                    try mpi.postValue(Int64(stats.samples), to: 0, tag: progressTag)
                }
                sampleStart = Date()
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

// MARK: - Dynamic assignment

extension LocalizationShard {
    /// MPI tags of dynamic assignment: a rank's request for its next sample (its count of
    /// finished samples) and the root's grant (a position in the queue, or −1: no more).
    static let requestTag: Int32 = 7302
    static let grantTag: Int32 = 7303

    /// How often the root's MPI thread looks for requests: a rank waits at most this long for
    /// its next sample, and polling this seldom costs the root's own attribution nothing measurable.
    static let pollInterval: useconds_t = 2_000

    /// Dynamic assignment: `queue` (every rank holds the same one, costliest first) is handed
    /// out one sample at a time, to whichever rank asks first, so a slow rank takes fewer
    /// samples instead of holding up the end. Each rank commits its samples to its own keeper
    /// exactly as in a static run, and the sums are exact, so the result is bitwise that of any
    /// other assignment.
    ///
    /// The root works too. MPI is initialized FUNNELED (only the main thread calls it), so on
    /// the root the main thread serves the requests (polling every `pollInterval`) while a
    /// second thread attributes the samples it takes from the same queue; it calls no MPI. The
    /// other ranks ask, wait for the grant (milliseconds), attribute, and ask again.
    ///
    /// Returns this rank's statistics and, on the root, which rank attributed each queue entry.
    public static func runDynamic(mpi: MPIContext, attributor: SampleStreamAttributor, queue: [ShardSample], keeper: CheckpointKeeper,
                                  progress: ProgressReporter?) throws -> (stats: ShardStatistics, owners: [Int]?) {
        let start = Date()
        func attributeOne(_ sample: ShardSample, into stats: inout ShardStatistics) throws {
            let sampleStart = Date()
            do {
                try attributor.attribute(samples: [(sample.prompt, sample.answer)]) { _, result in
                    straggle(rank: mpi.rank, sampleStart: sampleStart)
                    try keeper.commit(index: sample.index, bucket: sample.bucket, scores: result.scores)
                    stats.record(result)
                }
            } catch let failure as SampleAttributionFailure {
                throw ShardSampleError(sample: sample, rank: mpi.rank, underlying: failure.underlying)
            } catch {
                throw ShardSampleError(sample: sample, rank: mpi.rank, underlying: error)
            }
        }

        guard mpi.rank == 0 else {
            var stats = ShardStatistics()
            while true {
                try mpi.postValue(Int64(stats.samples), to: 0, tag: requestTag)
                guard let (_, grant) = try mpi.receiveValue(tag: grantTag, wait: true), grant >= 0 else { break }
                guard Int(grant) < queue.count else {
                    throw MPIError.call(operation: "dynamic assignment", rank: mpi.rank, code: -1, message: "granted position \(grant) of a queue of \(queue.count)")
                }
                try attributeOne(queue[Int(grant)], into: &stats)
            }
            try keeper.write()
            try mpi.completePendingSends()
            stats.seconds = Date().timeIntervalSince(start)
            return (stats, nil)
        }

        // The root: a queue shared by its attributing thread and the ranks' requests.
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var next = 0
            var owners: [Int]
            var stats = ShardStatistics()
            var finished = false
            var failure: Error?
            init(count: Int) { owners = [Int](repeating: -1, count: count) }
            /// The next queue position for `rank`, or nil when the queue is empty.
            func take(for rank: Int) -> Int? {
                lock.lock(); defer { lock.unlock() }
                guard next < owners.count else { return nil }
                owners[next] = rank
                next += 1
                return next - 1
            }
        }
        let shared = Shared(count: queue.count)
        // The attributor and keeper are used by this thread alone from here on (the keeper's
        // state is under its own lock, shared with its signal watcher).
        final class Job: @unchecked Sendable {
            let attribute: (ShardSample, inout ShardStatistics) throws -> Void
            init(_ attribute: @escaping (ShardSample, inout ShardStatistics) throws -> Void) { self.attribute = attribute }
        }
        let job = Job(attributeOne)
        let worker = Thread {
            var stats = ShardStatistics()
            do {
                while let i = shared.take(for: 0) {
                    try job.attribute(queue[i], &stats)
                    shared.lock.lock(); shared.stats = stats; shared.lock.unlock()
                }
            } catch {
                shared.lock.lock(); shared.failure = error; shared.lock.unlock()
            }
            shared.lock.lock(); shared.stats = stats; shared.finished = true; shared.lock.unlock()
        }
        worker.stackSize = 8 << 20
        worker.start()

        var doneByRank = [Int](repeating: 0, count: mpi.size)
        var waiting = mpi.size - 1   // ranks not yet told that the queue is empty
        progress?.update(done: 0)
        while true {
            while let (source, done) = try mpi.receiveValue(tag: requestTag, wait: false) {
                doneByRank[source] = Int(done)
                let grant = shared.take(for: source).map(Int64.init) ?? -1
                try mpi.postValue(grant, to: source, tag: grantTag)
                if grant < 0 { waiting -= 1 }
            }
            shared.lock.lock()
            let (finished, failure, own) = (shared.finished, shared.failure, shared.stats.samples)
            shared.lock.unlock()
            if let failure { throw failure }
            doneByRank[0] = own
            progress?.update(done: doneByRank.reduce(0, +))
            if finished && waiting == 0 { break }
            usleep(pollInterval)
        }
        try keeper.write()
        try mpi.completePendingSends()
        var stats = shared.stats
        stats.seconds = Date().timeIntervalSince(start)
        return (stats, shared.owners)
    }
}
