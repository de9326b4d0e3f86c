// The run-directory lock in one process: flock and the exclusive-file fallback, refusals, stale locks, the lease.
import Foundation
import XCTest
import Shard

final class RunDirectoryLockTests: XCTestCase {
    func tempDirectory() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lock-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The pid of a process that has ended (a pid that no process of this host runs).
    func deadPid() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    /// A lock file written by hand, as a holder on `host` with `pid` would have left it, its
    /// mtime `age` seconds in the past.
    func writeLockFile(_ dir: String, host: String, pid: Int32, mechanism: String, age: TimeInterval) throws -> String {
        let path = (dir as NSString).appendingPathComponent(RunDirectoryLock.fileName)
        let holder = LockHolder(host: host, pid: pid, slurmJob: "4242", since: "2026-01-01T00:00:00Z", mechanism: mechanism)
        try (JSONEncoder().encode(holder) + Data("\n".utf8)).write(to: URL(fileURLWithPath: path))
        let when = Date().addingTimeInterval(-age)
        try FileManager.default.setAttributes([.modificationDate: when], ofItemAtPath: path)
        return path
    }

    func assertHeld(_ expression: @autoclosure () throws -> RunDirectoryLock, by host: String, pid: Int32,
                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { e in
            guard case let RunLockError.held(_, holder, _) = e else { return XCTFail("not a refusal: \(e)", file: file, line: line) }
            XCTAssertEqual(holder?.host, host, file: file, line: line)
            XCTAssertEqual(holder?.pid, pid, file: file, line: line)
            let message = e.localizedDescription
            XCTAssertTrue(message.contains("host \(host), pid \(pid)") && message.contains("in use by another cnl job"), message, file: file, line: line)
        }
    }

    /// Two opens of one file are two flock holders, even in one process: the second is refused
    /// naming the first (this host, this pid); after a release the lock is free and the file gone.
    func testFlockRefusesASecondHolderAndIsFreeAfterRelease() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try RunDirectoryLock.acquire(directory: dir, mechanism: .flock)
        XCTAssertEqual(first.mechanism, .flock)
        XCTAssertNil(first.takenOver)
        XCTAssertEqual(RunDirectoryLock.readHolder(path: first.path), first.holder)
        XCTAssertEqual(first.holder.pid, getpid())
        assertHeld(try RunDirectoryLock.acquire(directory: dir, mechanism: .flock), by: RunDirectoryLock.hostName, pid: getpid())
        first.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: first.path), "a released lock removes its file")
        let second = try RunDirectoryLock.acquire(directory: dir, mechanism: .flock)
        XCTAssertNil(second.takenOver)
        second.release()
    }

    /// A lock file that nobody flocks (its holder was killed) is taken over, whatever host and
    /// lease it names, and the takeover says whom it replaced and why.
    func testFlockTakesOverAFileNobodyLocks() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dead = try deadPid()
        _ = try writeLockFile(dir, host: RunDirectoryLock.hostName, pid: dead, mechanism: "flock", age: 0)
        let lock = try RunDirectoryLock.acquire(directory: dir, mechanism: .flock)
        let taken = try XCTUnwrap(lock.takenOver)
        XCTAssertEqual(taken.holder?.pid, dead)
        XCTAssertEqual(taken.holder?.slurmJob, "4242")
        XCTAssertTrue(taken.reason.contains("pid \(dead) is not running"), taken.reason)
        XCTAssertEqual(RunDirectoryLock.readHolder(path: lock.path)?.pid, getpid())
        lock.release()
        _ = try writeLockFile(dir, host: "node-elsewhere", pid: 1, mechanism: "flock", age: 0)
        let again = try RunDirectoryLock.acquire(directory: dir, mechanism: .flock)
        XCTAssertTrue(again.takenOver?.reason.contains("node-elsewhere") ?? false, "\(String(describing: again.takenOver))")
        again.release()
    }

    /// The fallback without flock: O_EXCL creation. A live holder (this pid) is refused; a lock
    /// of a dead pid on this host is taken over; another host's lock is refused while its lease
    /// is fresh and taken over once it has expired.
    func testExclusiveFileLockAndItsStaleRules() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try RunDirectoryLock.acquire(directory: dir, mechanism: .file, lease: 60)
        XCTAssertEqual(first.mechanism, .file)
        assertHeld(try RunDirectoryLock.acquire(directory: dir, mechanism: .file, lease: 60), by: RunDirectoryLock.hostName, pid: getpid())
        first.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: first.path))

        let dead = try deadPid()
        _ = try writeLockFile(dir, host: RunDirectoryLock.hostName, pid: dead, mechanism: "file", age: 0)
        let afterDead = try RunDirectoryLock.acquire(directory: dir, mechanism: .file, lease: 60)
        XCTAssertTrue(afterDead.takenOver?.reason.contains("pid \(dead) is not running on this host") ?? false)
        afterDead.release()

        _ = try writeLockFile(dir, host: "node-elsewhere", pid: 77, mechanism: "file", age: 10)
        assertHeld(try RunDirectoryLock.acquire(directory: dir, mechanism: .file, lease: 60), by: "node-elsewhere", pid: 77)
        _ = try writeLockFile(dir, host: "node-elsewhere", pid: 77, mechanism: "file", age: 3600)
        let afterLease = try RunDirectoryLock.acquire(directory: dir, mechanism: .file, lease: 60)
        let taken = try XCTUnwrap(afterLease.takenOver)
        XCTAssertEqual(taken.holder?.host, "node-elsewhere")
        XCTAssertTrue(taken.reason.contains("lease expired"), taken.reason)
        XCTAssertEqual(RunDirectoryLock.readHolder(path: afterLease.path)?.pid, getpid())
        afterLease.release()
    }

    /// The holder renews its lease: an mtime pushed an hour back is fresh again within lease/4,
    /// so another host would not take a live lock over.
    func testHolderRenewsItsLease() throws {
        let dir = try tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lock = try RunDirectoryLock.acquire(directory: dir, mechanism: .file, lease: 0.8)
        defer { lock.release() }
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-3600)], ofItemAtPath: lock.path)
        Thread.sleep(forTimeInterval: 0.6)
        let mtime = try XCTUnwrap(FileManager.default.attributesOfItem(atPath: lock.path)[.modificationDate] as? Date)
        XCTAssertLessThan(Date().timeIntervalSince(mtime), 0.8, "renewed within the lease")
    }

    func testStaleRuleAndSettings() throws {
        let now = Date()
        let other = LockHolder(host: "b", pid: 5, slurmJob: nil, since: "", mechanism: "file")
        XCTAssertNil(RunDirectoryLock.staleReason(holder: other, modified: now.addingTimeInterval(-119), now: now, lease: 120, thisHost: "a", alive: { _ in false }),
                     "another host's pid is not checked here; its lease is")
        XCTAssertNotNil(RunDirectoryLock.staleReason(holder: other, modified: now.addingTimeInterval(-121), now: now, lease: 120, thisHost: "a", alive: { _ in true }))
        XCTAssertNotNil(RunDirectoryLock.staleReason(holder: other, modified: now, now: now, lease: 120, thisHost: "b", alive: { _ in false }))
        XCTAssertNil(RunDirectoryLock.staleReason(holder: other, modified: now, now: now, lease: 120, thisHost: "b", alive: { _ in true }))
        XCTAssertNil(RunDirectoryLock.staleReason(holder: nil, modified: now, now: now, lease: 120, thisHost: "b", alive: { _ in false }),
                     "a file naming nobody yet is a holder writing it")

        XCTAssertEqual(try RunDirectoryLock.settings(environment: [:]).mechanism, .flock)
        XCTAssertEqual(try RunDirectoryLock.settings(environment: [:]).lease, RunDirectoryLock.defaultLease)
        let s = try RunDirectoryLock.settings(environment: ["CNL_RUN_LOCK": "file", "CNL_RUN_LOCK_LEASE": "30"])
        XCTAssertEqual(s.mechanism, .file)
        XCTAssertEqual(s.lease, 30)
        XCTAssertThrowsError(try RunDirectoryLock.settings(environment: ["CNL_RUN_LOCK": "nfs"])) { e in
            XCTAssertTrue(e.localizedDescription.contains("CNL_RUN_LOCK='nfs'"), e.localizedDescription)
        }
        XCTAssertThrowsError(try RunDirectoryLock.settings(environment: ["CNL_RUN_LOCK_LEASE": "-1"]))
    }
}
