// Runs the built `cnl` binary as a user would, capturing exit status, stdout and stderr.
import Foundation
import XCTest

struct CLIResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

enum CLI {
    static let repoRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    /// The `cnl` executable built beside the test bundle (same configuration).
    static var binary: String {
        let bundleDir = Bundle.main.bundleURL.deletingLastPathComponent()
        for dir in [bundleDir, URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                    repoRoot.appendingPathComponent(".build/release")] {
            let p = dir.appendingPathComponent("cnl").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return repoRoot.appendingPathComponent(".build/release/cnl").path
    }

    static func asset(_ relative: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let p = repoRoot.appendingPathComponent(".assets").appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: p) else {
            XCTFail("missing \(p): run `make fixtures`", file: file, line: line)
            throw NSError(domain: "missing fixture", code: 1)
        }
        return p
    }

    @discardableResult
    static func run(_ args: [String], environment: [String: String] = [:], timeout: TimeInterval = 600) throws -> CLIResult {
        try launch(binary, args, environment: localSecurity.merging(environment) { $1 }, timeout: timeout)
    }

    /// PMIx's security for launches on this machine alone (mpirun, a singleton): `native` (the
    /// peer's uid over a Unix socket). Its default tries munge first, and once SlurmTests have
    /// stopped munged its socket stays behind: every Open MPI start then retried it for 2.3 s
    /// before falling back (seen with strace), which is most of a refused run's time.
    static let localSecurity = ["PMIX_MCA_psec": ProcessInfo.processInfo.environment["PMIX_MCA_psec"] ?? "native"]

    /// `cnl args…` under `mpirun -np n` (as root, oversubscribed, one BLAS thread per rank).
    @discardableResult
    static func mpirun(_ n: Int, _ args: [String], environment: [String: String] = [:], timeout: TimeInterval = 600) throws -> CLIResult {
        var env = localSecurity.merging(environment) { $1 }
        env["OPENBLAS_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] ?? "1"
        return try launch("/usr/bin/mpirun", ["--allow-run-as-root", "--oversubscribe", "-np", "\(n)", binary] + args,
                          environment: env, timeout: timeout)
    }

    /// The oracle venv's Python (made by `make fixtures`).
    static func python(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> CLIResult {
        let python = repoRoot.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            XCTFail("missing \(python): run `make fixtures` (scripts/setup.sh --oracle)", file: file, line: line)
            throw NSError(domain: "missing venv", code: 1)
        }
        return try launch(python, args, environment: [:], timeout: 600)
    }

    /// A fresh temporary directory, removed by the caller.
    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs a program; a run longer than `timeout` is killed and reported as status −1, so a
    /// hang (an MPI rank waiting forever) fails the test instead of stalling the suite.
    ///
    /// Foundation's `Process` is not trusted to see the end: on Linux the child inherits an
    /// internal descriptor of it, and a daemon the child starts (slurmctld, munged) keeps that
    /// descriptor open for good, so `waitUntilExit` never returned and the suite hung until CI
    /// killed it. Here the exit is read with `waitid` (the child is a zombie once it has
    /// exited, whoever holds its descriptors), and output still held open by a grandchild is
    /// given a short grace, then taken as it is.
    static func launch(_ executable: String, _ args: [String], environment: [String: String], timeout: TimeInterval) throws -> CLIResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.currentDirectoryURL = repoRoot
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let pid = p.processIdentifier
        // Both pipes are drained while the child runs, so a chatty child never blocks on a full pipe.
        let stdout = PipeReader(out.fileHandleForReading), stderr = PipeReader(err.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32?
        while status == nil {
            if !p.isRunning {
                status = p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus
            } else if let exited = exitedChild(pid) {
                status = exited
            } else if Date() >= deadline {
                kill(pid, SIGKILL)
                Thread.sleep(forTimeInterval: 0.5)
                if p.isRunning { _ = exitedChild(pid) }   // reaped, not left a zombie
                status = -1
            } else {
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        let grace = Date().addingTimeInterval(5)
        return CLIResult(status: status!, stdout: stdout.text(waitingUntil: grace), stderr: stderr.text(waitingUntil: grace))
    }

    /// The exit status of `pid` if it has exited (reaping it), else nil; a death by signal is
    /// 128 + the signal, as a shell reports it.
    private static func exitedChild(_ pid: pid_t) -> Int32? {
        var info = siginfo_t()
        guard waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0, info._sifields._sigchld.si_pid == pid else { return nil }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }   // Foundation reaped it first: its own status is read then
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }
}

/// Reads a pipe to its end on a thread of its own.
private final class PipeReader: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                lock.lock(); data.append(chunk); lock.unlock()
            }
            done.signal()
        }
    }

    /// Everything read by the end of the pipe, or by `limit` if a grandchild still holds it open.
    func text(waitingUntil limit: Date) -> String {
        _ = done.wait(timeout: .now() + max(0, limit.timeIntervalSinceNow))
        lock.lock(); defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

extension XCTestCase {
    /// A refused input: a non-zero exit on every rank (no hang), exactly one `cnl: error:` line
    /// holding every needle, and (given `outputDir`) no files left in the output directory.
    func assertOneLineFailure(_ r: CLIResult, contains needles: [String], outputDir: URL?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "must fail", file: file, line: line)
        XCTAssertNotEqual(r.status, -1, "timed out (a rank hung)", file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("cnl: error:") }
        XCTAssertEqual(errors.count, 1, "exactly one error line: \(r.stderr)", file: file, line: line)
        for n in needles { XCTAssertTrue(r.stderr.contains(n), "'\(n)' not in: \(r.stderr)", file: file, line: line) }
        if let outputDir {
            let files = (try? FileManager.default.contentsOfDirectory(atPath: outputDir.path)) ?? []
            XCTAssertTrue(files.isEmpty, "no outputs after a failed run, found \(files)", file: file, line: line)
        }
    }

}
