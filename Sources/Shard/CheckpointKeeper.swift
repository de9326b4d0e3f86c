// A rank's committed state: sums, finished samples and stored scores, checkpointed every N samples and on signals.
import Foundation

/// Set by SIGUSR1/SIGTERM (Slurm's warning before preemption or time-out, scancel, mpirun
/// tearing a job down); read by the keeper's watcher thread.
nonisolated(unsafe) private var stopSignal: sig_atomic_t = 0

/// Everything a rank has finished, kept consistent under one lock: a sample is either fully in
/// (its score in the sums, its frame in the store, its index in `finished`) or not at all. A
/// checkpoint is a snapshot of that state, so resuming never loses or double-counts a sample.
public final class CheckpointKeeper {
    /// Exit status after a checkpoint on a signal: "requeue me" (BSD's EX_TEMPFAIL).
    public static let requeueStatus: Int32 = 75

    public let path: String
    private var header: RunCheckpoint.Header
    public private(set) var sums: ScoreAccumulator
    private let every: Int
    private let store: PerSampleStore?
    private let lock = NSLock()
    private var sinceLast = 0
    public private(set) var writes = 0
    /// Set once the sums of every rank are on the root (`ignoreStopSignals()`).
    private var reduced = false

    /// `sums`/`finished`: what this rank starts from (the root: everything earlier jobs finished).
    public init(path: String, header: RunCheckpoint.Header, sums: ScoreAccumulator, every: Int, store: PerSampleStore?) {
        self.path = path
        self.header = header
        self.sums = sums
        self.every = every
        self.store = store
    }

    public var finished: [FinishedSample] { lock.lock(); defer { lock.unlock() }; return header.finished }
    public var storeBytes: (raw: Int, compressed: Int) { (store?.rawBytes ?? 0, store?.compressedBytes ?? 0) }

    /// Adds one finished sample; writes a checkpoint every `every` samples (0: only on demand).
    public func commit(index: Int, bucket: Int, scores: [Double]) throws {
        lock.lock(); defer { lock.unlock() }
        // Validate by adding to a copy first: a non-finite score must not half-update anything.
        var next = sums
        try next.add(scores, bucket: bucket)
        let entry = try store?.append(index: index, scores: scores) ?? FinishedSample(index: index)
        sums = next
        header.finished.append(entry)
        sinceLast += 1
        if every > 0 && sinceLast >= every { try writeLocked() }
    }

    public func write() throws { lock.lock(); defer { lock.unlock() }; try writeLocked() }

    /// Stops acting on stop signals, once every rank's sums have reached the root: what is left
    /// (the root's outputs) takes seconds, well inside Slurm's warning (USR1@120) or its
    /// SIGTERM-to-SIGKILL grace. A run that is as good as finished must not exit 75: a requeued
    /// copy would find the finished run and fail, and a checkpoint written after the root
    /// removed them would be a stray file.
    public func ignoreStopSignals() {
        lock.lock(); defer { lock.unlock() }
        reduced = true
    }

    /// Fault injection for the test suite: CNL_TEST_CRASH_DURING_CHECKPOINT=k makes this process
    /// die (status 86) halfway through writing its k-th checkpoint, as a node failure would.
    static let crashAtWrite = ProcessInfo.processInfo.environment["CNL_TEST_CRASH_DURING_CHECKPOINT"].flatMap(Int.init)

    private func writeLocked() throws {
        try store?.flush()
        let checkpoint = RunCheckpoint(header: header, sums: sums)
        if let k = Self.crashAtWrite, writes + 1 == k {
            let bytes = try checkpoint.encoded()
            _ = FileManager.default.createFile(atPath: AtomicFile.temporaryPath(for: path), contents: bytes.prefix(bytes.count / 2))
            FileHandle.standardError.write(Data("cnl: test fault: crashing while writing checkpoint \(k) to \(path)\n".utf8))
            _exit(86)
        }
        try checkpoint.write(to: path)
        sinceLast = 0
        writes += 1
    }

    /// Catches SIGUSR1/SIGTERM from the start of a run, before any keeper exists: a signal during
    /// planning or model loading is then acted on as soon as the keeper watches (it checkpoints
    /// what earlier jobs finished and exits with `requeueStatus`), instead of killing the rank
    /// with a status the batch script would not requeue.
    public static func catchStopSignals() {
        signal(SIGUSR1) { _ in stopSignal = 1 }
        signal(SIGTERM) { _ in stopSignal = 1 }
    }

    /// Whether SIGUSR1/SIGTERM arrived since `catchStopSignals` (for loops that stop at their own
    /// safe points, such as cnl enhance's batch boundaries); `requestStop` raises it from code.
    public static var stopRequested: Bool { stopSignal != 0 }
    public static func requestStop() { stopSignal = 1 }

    /// From now on SIGUSR1 or SIGTERM makes this process write its checkpoint (of the samples
    /// finished so far; the one in progress is dropped) and exit with `requeueStatus` within a
    /// fraction of a second, even in the middle of a long sample.
    public func watchSignals(rank: Int) {
        Self.catchStopSignals()
        let t = Thread { [self] in
            while stopSignal == 0 { usleep(100_000) }
            lock.lock()
            if reduced {
                lock.unlock()
                FileHandle.standardError.write(Data("cnl: rank \(rank): stop signal after the reduction: finishing the run\n".utf8))
                return
            }
            var message = "cnl: rank \(rank): stop signal; "
            do {
                try writeLocked()
                message += "checkpointed \(header.finished.count) finished samples to \(path); exiting with status \(Self.requeueStatus) (resubmit to resume)\n"
            } catch {
                message += "could not write the checkpoint: \(error.localizedDescription)\n"
            }
            FileHandle.standardError.write(Data(message.utf8))
            // The root's run-directory lock goes with it, so the requeued job finds none.
            RunDirectoryLock.releaseHeld()
            _exit(Self.requeueStatus)
        }
        t.start()
    }
}

/// A rank with nothing of its own to checkpoint (a pipeline stage after the first: the
/// group's first stage holds the group's sums and writes its checkpoints) leaves on a stop
/// signal with the requeue status, as its first stage does, instead of waiting on a stage
/// that has gone.
public final class StopSignalExit {
    private let lock = NSLock()
    private var ignoring = false

    public init(rank: Int, stage: Int) {
        CheckpointKeeper.catchStopSignals()
        let t = Thread { [self] in
            while stopSignal == 0 { usleep(100_000) }
            lock.lock()
            defer { lock.unlock() }
            guard !ignoring else { return }
            FileHandle.standardError.write(Data("cnl: rank \(rank) (stage \(stage)): stop signal; its group's first stage keeps the checkpoint; exiting with status \(CheckpointKeeper.requeueStatus)\n".utf8))
            _exit(CheckpointKeeper.requeueStatus)
        }
        t.start()
    }

    /// From now on (the work is done and reduced) a stop signal no longer ends the rank.
    public func ignore() { lock.lock(); ignoring = true; lock.unlock() }
}
