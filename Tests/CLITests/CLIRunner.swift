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
    static func run(_ args: [String], environment: [String: String] = [:], timeout: TimeInterval = 1800) throws -> CLIResult {
        try launch(binary, args, environment: environment, timeout: timeout)
    }

    /// `cnl args…` under `mpirun -np n` (as root, oversubscribed, one BLAS thread per rank).
    @discardableResult
    static func mpirun(_ n: Int, _ args: [String], environment: [String: String] = [:], timeout: TimeInterval = 1800) throws -> CLIResult {
        var env = environment
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
        let started = Date()
        try p.run()
        let watchdog = DispatchWorkItem { if p.isRunning { kill(-p.processIdentifier, SIGKILL); p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
        defer { watchdog.cancel() }
        // Read both pipes fully before waiting, so a chatty child never blocks on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let o = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { o.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let e = err.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        let timedOut = p.terminationReason == .uncaughtSignal && watchdog.isCancelled == false && !p.isRunning
            && Date() >= started.addingTimeInterval(timeout)
        return CLIResult(status: timedOut ? -1 : p.terminationStatus, stdout: String(decoding: o.data, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }
}
