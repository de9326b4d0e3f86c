// One job per run directory: a second job into a busy directory is refused at once, naming the
// holder, and the first finishes untouched; the lock of a killed job is taken over.
import Foundation
import XCTest

final class RunLockTests: XCTestCase {
    /// A `cnl locate` of the tiny config into `out`, started on a thread; `wait()` gives its result.
    final class BackgroundRun: @unchecked Sendable {
        private var result: Result<CLIResult, Error>?
        private let done = DispatchSemaphore(value: 0)
        init(_ body: @escaping @Sendable () throws -> CLIResult) {
            Thread.detachNewThread { [self] in result = Result { try body() }; done.signal() }
        }
        func wait() throws -> CLIResult { done.wait(); done.signal(); return try result!.get() }
        var finished: Bool { if done.wait(timeout: .now()) == .success { done.signal(); return true }; return false }
    }

    struct Holder: Decodable { var host: String; var pid: Int32; var mechanism: String }

    /// Waits until the run into `out` holds its lock and has planned (its root checkpoint of
    /// generation 0 is written before any rank starts): then the long part is still ahead.
    func waitUntilPlanned(_ out: URL, _ run: BackgroundRun) throws -> Holder {
        let deadline = Date().addingTimeInterval(120)
        let lock = out.appendingPathComponent(".lock").path, planned = out.appendingPathComponent("checkpoints/g0-r0.cnlck").path
        while Date() < deadline, !run.finished {
            if FileManager.default.fileExists(atPath: planned), let data = FileManager.default.contents(atPath: lock),
               let holder = try? JSONDecoder().decode(Holder.self, from: data) { return holder }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("the first run never planned: \(String(describing: try? run.wait().stderr))")
        throw NSError(domain: "no plan", code: 1)
    }

    /// Two jobs into one directory (a double submission): the second, under mpirun -np 2, is
    /// refused with one line naming the holder and a non-zero exit, while the first still works;
    /// the first then finishes with the bytes of a lone run.
    func testSecondJobIntoABusyDirectoryIsRefusedAndTheFirstFinishesUntouched() throws {
        let reference = try ResumeTests.reference.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("same")
        let args = ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--checkpoint-every", "1"]
        let first = BackgroundRun { try CLI.mpirun(2, args) }
        let holder = try waitUntilPlanned(out, first)
        XCTAssertEqual(holder.mechanism, "flock")
        let start = Date()
        let second = try CLI.mpirun(2, args, timeout: 120)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertFalse(first.finished, "the second job must be refused while the first runs, not after waiting for it")
        assertOneLineFailure(second, contains: ["is in use by another cnl job", "host \(holder.host), pid \(holder.pid)", out.path + "/.lock"], outputDir: nil)
        XCTAssertFalse(second.stderr.contains("cnl locate: "), "refused before planning: \(second.stderr)")
        print("second job into a busy run directory (mpirun -np 2): refused after \(String(format: "%.2f", seconds)) s, exit \(second.status): "
              + (second.stderr.split(separator: "\n").first { $0.hasPrefix("cnl: error:") } ?? ""))
        let r = try first.wait()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try Data(contentsOf: out.appendingPathComponent("scores.safetensors")) == reference,
                      "the first job's scores differ from a lone run")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent(".lock").path), "a finished run leaves no lock")
    }

    /// The lock of a job killed with kill -9 (no chance to remove it) is taken over by the next
    /// job, which says so, resumes and ends in the lone run's bytes. `file`: the same with the
    /// fallback for file systems without flock (O_EXCL lock file, lease), where the killed job's
    /// file is judged by its pid, and a live holder is refused as with flock.
    func testLockOfAKilledJobIsTakenOver() throws {
        try killedHolderIsTakenOver(environment: [:], mechanism: "flock")
    }

    func testLockOfAKilledJobIsTakenOverWithTheLockFileFallback() throws {
        try killedHolderIsTakenOver(environment: ["CNL_RUN_LOCK": "file"], mechanism: "file")
    }

    func killedHolderIsTakenOver(environment: [String: String], mechanism: String) throws {
        let reference = try ResumeTests.reference.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let args = ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--threads", "1", "--checkpoint-every", "1"]
        let first = BackgroundRun { try CLI.run(args, environment: environment) }
        let holder = try waitUntilPlanned(out, first)
        XCTAssertEqual(holder.mechanism, mechanism)
        let start = Date()
        let refused = try CLI.run(args, environment: environment, timeout: 120)
        let seconds = Date().timeIntervalSince(start)
        assertOneLineFailure(refused, contains: ["is in use by another cnl job", "pid \(holder.pid)"], outputDir: nil)
        print("\(mechanism): a second job (one process) refused after \(String(format: "%.2f", seconds)) s")
        XCTAssertEqual(kill(holder.pid, SIGKILL), 0)
        let killed = try first.wait()
        XCTAssertEqual(killed.status, 128 + SIGKILL, killed.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(".lock").path), "kill -9 leaves the lock file behind")
        let next = try CLI.run(args, environment: environment)
        XCTAssertEqual(next.status, 0, next.stderr)
        XCTAssertTrue(next.stderr.contains("took over the stale lock") && next.stderr.contains("pid \(holder.pid)")
                      && next.stderr.contains("pid \(holder.pid) is not running on this host"), next.stderr)
        print("\(mechanism): " + (next.stderr.split(separator: "\n").first { $0.contains("took over") } ?? ""))
        XCTAssertTrue(try Data(contentsOf: out.appendingPathComponent("scores.safetensors")) == reference)
    }
}
