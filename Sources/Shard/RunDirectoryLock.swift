// One job per run directory: an exclusive lock on <run>/.lock that names its holder.
import Foundation

/// Who holds a run directory, as written inside its `.lock` (one JSON line).
public struct LockHolder: Codable, Equatable, Sendable {
    public var host: String
    public var pid: Int32
    /// SLURM_JOB_ID (with the array task, SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID) when under Slurm.
    public var slurmJob: String?
    /// When the lock was taken (ISO 8601, UTC).
    public var since: String
    /// "flock" or "file" (see `RunDirectoryLock.Mechanism`).
    public var mechanism: String

    enum CodingKeys: String, CodingKey {
        case host, pid, since, mechanism
        case slurmJob = "slurm_job"
    }

    public init(host: String, pid: Int32, slurmJob: String?, since: String, mechanism: String) {
        self.host = host; self.pid = pid; self.slurmJob = slurmJob; self.since = since; self.mechanism = mechanism
    }

    /// This process, now.
    static func current(mechanism: RunDirectoryLock.Mechanism) -> LockHolder {
        let env = ProcessInfo.processInfo.environment
        var job = env["SLURM_JOB_ID"]
        if let array = env["SLURM_ARRAY_JOB_ID"], let task = env["SLURM_ARRAY_TASK_ID"] { job = "\(array)_\(task)" }
        return LockHolder(host: RunDirectoryLock.hostName, pid: getpid(), slurmJob: job,
                          since: ISO8601DateFormatter().string(from: Date()), mechanism: mechanism.rawValue)
    }

    /// "host h, pid p, Slurm job j, since t".
    public var description: String {
        "host \(host), pid \(pid)" + (slurmJob.map { ", Slurm job \($0)" } ?? "") + ", since \(since)"
    }
}

public enum RunLockError: Error, LocalizedError, Equatable {
    /// Another job holds the directory. `holder` is nil when its file names nobody yet (a job
    /// between taking the lock and writing its name, a fraction of a second).
    case held(directory: String, holder: LockHolder?, lockPath: String)
    case cannotLock(path: String, reason: String)
    case badSetting(name: String, value: String, expected: String)

    public var errorDescription: String? {
        switch self {
        case let .held(directory, holder, lockPath):
            return "\(directory) is in use by another cnl job (\(holder?.description ?? "holder not yet recorded"); lock \(lockPath)); "
                + "wait for that job to end, cancel it, or choose another --output"
        case let .cannotLock(path, reason):
            return "\(path): cannot lock the run directory (\(reason)); check that the output directory is writable"
                + " (on a file system without locks set CNL_RUN_LOCK=file)"
        case let .badSetting(name, value, expected):
            return "environment \(name)='\(value)': expected \(expected)"
        }
    }
}

/// The exclusive lock the root holds on a run directory from before planning until its report
/// is written, so that two jobs (a double submission, a requeued job whose old instance still
/// runs) never interleave their writes into one directory. The lock file holds its holder's
/// host, pid and Slurm job id, so the job that is refused can name it.
///
/// Two mechanisms:
/// - `flock` (default): flock(2) on `<run>/.lock`. The kernel (or the file server) drops the
///   lock when the holder dies however it dies, so a lock file found without a lock on it
///   is stale by definition and is taken over (and logged). Local file systems, NFSv4 and
///   NFSv3 with NLM (Linux emulates flock with POSIX byte-range locks there), and Lustre
///   mounted with `-o flock` are coherent across hosts.
/// - `file` (chosen by CNL_RUN_LOCK=file, and automatically when flock(2) is not supported:
///   ENOSYS, EOPNOTSUPP, ENOLCK, as on Lustre mounted `noflock`): the lock file itself,
///   created with O_CREAT|O_EXCL (atomic on local file systems, NFSv3+ and Lustre). The
///   holder renews a lease by touching the file's mtime every lease/4. A lock file is stale
///   when its holder is on this host and its pid is not running, or, from any host, when its
///   mtime is older than the lease (CNL_RUN_LOCK_LEASE seconds, default 120). Use it, too,
///   where flock is only node-local (Lustre `-o localflock`).
public final class RunDirectoryLock: @unchecked Sendable {
    public enum Mechanism: String, Sendable { case flock, file }

    public static let fileName = ".lock"
    public static let defaultLease: TimeInterval = 120

    public let path: String
    public let mechanism: Mechanism
    public let holder: LockHolder
    /// The previous holder of a stale lock this one replaced, and why it was stale (for the log).
    public let takenOver: (holder: LockHolder?, reason: String)?
    /// Set when flock(2) was asked for but the file system refused it (for the log).
    public let flockUnsupported: String?
    private let lease: TimeInterval
    private let lock = NSLock()
    private var fd: Int32
    private var released = false

    /// The lock a root holds, released by `releaseHeld()` on the paths that leave by `_exit`.
    nonisolated(unsafe) private static var held: RunDirectoryLock?
    private static let heldLock = NSLock()

    private init(path: String, fd: Int32, mechanism: Mechanism, holder: LockHolder, lease: TimeInterval,
                 takenOver: (holder: LockHolder?, reason: String)?, flockUnsupported: String?) {
        self.path = path; self.fd = fd; self.mechanism = mechanism; self.holder = holder; self.lease = lease
        self.takenOver = takenOver; self.flockUnsupported = flockUnsupported
    }

    /// The mechanism and lease from CNL_RUN_LOCK (flock or file) and CNL_RUN_LOCK_LEASE (seconds).
    public static func settings(environment: [String: String] = ProcessInfo.processInfo.environment) throws
        -> (mechanism: Mechanism, lease: TimeInterval) {
        var mechanism = Mechanism.flock
        if let v = environment["CNL_RUN_LOCK"], !v.isEmpty {
            guard let m = Mechanism(rawValue: v) else { throw RunLockError.badSetting(name: "CNL_RUN_LOCK", value: v, expected: "flock or file") }
            mechanism = m
        }
        var lease = defaultLease
        if let v = environment["CNL_RUN_LOCK_LEASE"], !v.isEmpty {
            guard let s = Double(v), s > 0, s.isFinite else {
                throw RunLockError.badSetting(name: "CNL_RUN_LOCK_LEASE", value: v, expected: "a positive number of seconds")
            }
            lease = s
        }
        return (mechanism, lease)
    }

    /// Takes the lock of `directory` (created if missing) or throws `held` at once, naming the
    /// holder. Never waits for another job.
    public static func acquire(directory: String, mechanism: Mechanism = .flock, lease: TimeInterval = defaultLease) throws -> RunDirectoryLock {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw RunLockError.cannotLock(path: directory, reason: error.localizedDescription)
        }
        let path = (directory as NSString).appendingPathComponent(fileName)
        let lock: RunDirectoryLock
        if mechanism == .flock {
            switch try acquireFlock(directory: directory, path: path, lease: lease) {
            case let .acquired(l): lock = l
            case let .unsupported(reason): lock = try acquireFile(directory: directory, path: path, lease: lease, flockUnsupported: reason)
            }
        } else {
            lock = try acquireFile(directory: directory, path: path, lease: lease, flockUnsupported: nil)
        }
        lock.startHeartbeat()
        heldLock.lock(); held = lock; heldLock.unlock()
        return lock
    }

    /// Releases the lock this process holds, if any: for exits that skip the normal path (a
    /// stop signal's checkpoint-and-exit, an abort after a failing rank), so the requeued job
    /// finds no lock to wait out.
    public static func releaseHeld() {
        heldLock.lock(); let l = held; heldLock.unlock()
        l?.release()
    }

    /// Removes the lock file (only if it is still this lock's) and drops the lock.
    public func release() {
        lock.lock(); defer { lock.unlock() }
        guard !released else { return }
        released = true
        if stillOwnsPath() { unlink(path) }
        close(fd)
        fd = -1
        Self.heldLock.lock(); if Self.held === self { Self.held = nil }; Self.heldLock.unlock()
    }

    deinit { release() }

    // MARK: flock

    private enum FlockOutcome { case acquired(RunDirectoryLock), unsupported(String) }

    private static func acquireFlock(directory: String, path: String, lease: TimeInterval) throws -> FlockOutcome {
        // Retried when the file we locked is no longer the one at `path` (its holder removed it
        // between our open and our flock): a lock on an unlinked file protects nothing.
        for _ in 0..<20 {
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw RunLockError.cannotLock(path: path, reason: String(cString: strerror(errno))) }
            if flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let e = errno
                let previous = readHolder(fd: fd)
                close(fd)
                if e == EWOULDBLOCK { throw RunLockError.held(directory: directory, holder: previous, lockPath: path) }
                if e == ENOSYS || e == EOPNOTSUPP || e == ENOLCK || e == EINVAL { return .unsupported(String(cString: strerror(e))) }
                throw RunLockError.cannotLock(path: path, reason: "flock: " + String(cString: strerror(e)))
            }
            guard sameFile(fd: fd, path: path) else { close(fd); continue }
            // We hold the flock, so whoever the file names holds nothing: it ended without
            // removing the file (kill -9, a node lost, MPI_Abort).
            let previous = readHolder(fd: fd)
            let hadContent = (fileSize(fd: fd) ?? 0) > 0
            let holder = LockHolder.current(mechanism: .flock)
            try writeHolder(holder, fd: fd, path: path)
            let reason: String? = hadContent ? staleReasonUnderFlock(previous) : nil
            return .acquired(RunDirectoryLock(path: path, fd: fd, mechanism: .flock, holder: holder, lease: lease,
                                              takenOver: reason.map { (previous, $0) }, flockUnsupported: nil))
        }
        throw RunLockError.cannotLock(path: path, reason: "the lock file kept being replaced while locking it")
    }

    static func staleReasonUnderFlock(_ previous: LockHolder?) -> String {
        guard let previous else { return "it named no holder and nobody held its flock" }
        if previous.host == hostName {
            return processAlive(previous.pid) ? "nobody held its flock (pid \(previous.pid) is another process now)"
                : "pid \(previous.pid) is not running on this host"
        }
        return "nobody on \(previous.host) held its flock any more"
    }

    // MARK: exclusive file with a lease

    private static func acquireFile(directory: String, path: String, lease: TimeInterval, flockUnsupported: String?) throws -> RunDirectoryLock {
        var takenOver: (holder: LockHolder?, reason: String)?
        for _ in 0..<20 {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                let holder = LockHolder.current(mechanism: .file)
                do { try writeHolder(holder, fd: fd, path: path) } catch { close(fd); unlink(path); throw error }
                return RunDirectoryLock(path: path, fd: fd, mechanism: .file, holder: holder, lease: lease,
                                        takenOver: takenOver, flockUnsupported: flockUnsupported)
            }
            guard errno == EEXIST else { throw RunLockError.cannotLock(path: path, reason: String(cString: strerror(errno))) }
            // Someone's lock file: judge it by what it says and how old its lease is.
            let existing = open(path, O_RDONLY | O_CLOEXEC)
            guard existing >= 0 else { continue }   // removed meanwhile: try to create it again
            var st = stat()
            let statted = fstat(existing, &st) == 0
            let previous = readHolder(fd: existing)
            close(existing)
            guard statted else { continue }
            let mtime = Date(timeIntervalSince1970: TimeInterval(st.st_mtim.tv_sec) + TimeInterval(st.st_mtim.tv_nsec) / 1e9)
            guard let reason = staleReason(holder: previous, modified: mtime, now: Date(), lease: lease, thisHost: hostName,
                                           alive: processAlive) else {
                throw RunLockError.held(directory: directory, holder: previous, lockPath: path)
            }
            // Move the stale file aside, then check that what moved is the file judged stale (a
            // second job taking over at the same moment may have replaced it with a live lock:
            // that one is put back and wins).
            let aside = path + ".stale-\(hostName)-\(getpid())"
            guard rename(path, aside) == 0 else { continue }
            var moved = stat()
            if stat(aside, &moved) == 0, moved.st_ino == st.st_ino, moved.st_dev == st.st_dev {
                unlink(aside)
                takenOver = (previous, reason)
            } else {
                if link(aside, path) != 0 { /* a third job made a new one: it holds the lock */ }
                unlink(aside)
            }
        }
        throw RunLockError.cannotLock(path: path, reason: "the lock file kept being replaced while locking it")
    }

    /// Why a lock file of the `file` mechanism is stale, or nil while its holder may be alive:
    /// on this host, a pid that is not running; on any host, a lease not renewed for `lease`
    /// seconds (a holder renews it every lease/4; a file naming nobody is a holder between
    /// creating and writing it, a fraction of a second, so the lease applies to it too).
    public static func staleReason(holder: LockHolder?, modified: Date, now: Date, lease: TimeInterval, thisHost: String,
                                   alive: (Int32) -> Bool) -> String? {
        if let holder, holder.host == thisHost, !alive(holder.pid) {
            return "pid \(holder.pid) is not running on this host"
        }
        let age = now.timeIntervalSince(modified)
        if age > lease {
            return "its lease expired: last renewed \(Int(age.rounded())) s ago, lease \(Int(lease.rounded())) s"
        }
        return nil
    }

    // MARK: heartbeat

    /// Renews the lease (the file's mtime, set by the file server's clock with futimens(NULL))
    /// every lease/4, and warns once if the path no longer names this lock's file.
    private func startHeartbeat() {
        let interval = max(0.05, lease / 4)
        let t = Thread { [weak self] in
            var warned = false
            while true {
                Thread.sleep(forTimeInterval: interval)
                guard let self else { return }
                self.lock.lock()
                if self.released { self.lock.unlock(); return }
                futimens(self.fd, nil)
                let owns = self.stillOwnsPath()
                self.lock.unlock()
                if !owns && !warned {
                    warned = true
                    FileHandle.standardError.write(Data("cnl: warning: \(self.path) no longer is this job's lock (removed or taken over by another job); another job may be writing into this run directory\n".utf8))
                }
            }
        }
        t.start()
    }

    // MARK: helpers

    public static let hostName: String = {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        return String(cString: buf)
    }()

    static func processAlive(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    private func stillOwnsPath() -> Bool { fd >= 0 && Self.sameFile(fd: fd, path: path) }

    private static func sameFile(fd: Int32, path: String) -> Bool {
        var a = stat(), b = stat()
        return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev
    }

    private static func fileSize(fd: Int32) -> Int? {
        var st = stat()
        return fstat(fd, &st) == 0 ? Int(st.st_size) : nil
    }

    /// The holder a lock file names (nil: empty or not a holder line).
    static func readHolder(fd: Int32) -> LockHolder? {
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = pread(fd, &bytes, bytes.count, 0)
        guard n > 0 else { return nil }
        return try? JSONDecoder().decode(LockHolder.self, from: Data(bytes[0..<n]))
    }

    public static func readHolder(path: String) -> LockHolder? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return readHolder(fd: fd)
    }

    private static func writeHolder(_ holder: LockHolder, fd: Int32, path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let line = Array((try enc.encode(holder)) + Data("\n".utf8))
        guard ftruncate(fd, 0) == 0, pwrite(fd, line, line.count, 0) == line.count, fsync(fd) == 0 else {
            throw RunLockError.cannotLock(path: path, reason: String(cString: strerror(errno)))
        }
    }
}
