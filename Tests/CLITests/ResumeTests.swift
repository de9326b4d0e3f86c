// Preemption and failures of `cnl locate`: every interrupted run resumes to byte-identical scores.
import Foundation
import XCTest

final class ResumeTests: XCTestCase {
    /// The uninterrupted tiny run's scores.safetensors (computed once per test process).
    static let reference: Result<Data, Error> = Result {
        let dir = try CLI.temporaryDirectory()
        let out = dir.appendingPathComponent("reference").path
        let r = try CLI.run(["locate", "--config", "configs/tiny.yaml", "--output", out, "--threads", "1"])
        guard r.status == 0 else { throw NSError(domain: "reference run failed: \(r.stderr)", code: 1) }
        return try Data(contentsOf: URL(fileURLWithPath: out + "/scores.safetensors"))
    }

    func checkpointFiles(_ out: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("checkpoints").path)) ?? []).sorted()
    }

    /// Runs the tiny config under `mpirun -np n` and, once rank 1 has checkpointed a sample,
    /// calls `interrupt` (with the ranks' pids by rank); returns mpirun's result.
    func interruptedRun(np: Int, out: URL, environment: [String: String] = [:], extra: [String] = [],
                        interrupt: (([Int: pid_t]) -> Void)?) throws -> CLIResult {
        final class Box: @unchecked Sendable { var fired = false }
        let box = Box()
        let watcher = Thread {
            let deadline = Date().addingTimeInterval(240)
            let marker = out.appendingPathComponent("checkpoints/g0-r1.cnlck").path
            while Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
                guard FileManager.default.fileExists(atPath: marker) else { continue }
                var pids: [Int: pid_t] = [:]
                for r in 0..<np { if let p = LocateCommandTests.processWithEnvironment("OMPI_COMM_WORLD_RANK=\(r)", binary: CLI.binary, argument: out.path) { pids[r] = p } }
                interrupt?(pids)
                box.fired = true
                return
            }
        }
        if interrupt != nil { watcher.start() }
        let r = try CLI.mpirun(np, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--checkpoint-every", "1"] + extra,
                               environment: environment, timeout: 600)
        if interrupt != nil { XCTAssertTrue(box.fired, "the run ended before it could be interrupted: \(r.stderr)") }
        return r
    }

    func assertMatchesReference(_ out: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let got = try Data(contentsOf: out.appendingPathComponent("scores.safetensors"))
        XCTAssertTrue(got == (try Self.reference.get()), "scores.safetensors differs from the uninterrupted run", file: file, line: line)
        XCTAssertTrue(checkpointFiles(out).isEmpty, "a finished run removes its checkpoints", file: file, line: line)
    }

    func report(_ out: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("report.json"))) as! [String: Any]
    }

    /// Slurm's warning signal (SIGUSR1) to every rank: each checkpoints and exits 75; the
    /// resubmitted job runs with 3 ranks instead of 2 and ends with the same bytes.
    func testSignalThenResumeWithAnotherRankCount() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 2, out: out) { pids in for p in pids.values { kill(p, SIGUSR1) } }
        XCTAssertEqual(first.status, 75, first.stderr)
        XCTAssertTrue(first.stderr.contains("checkpointed"), first.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("report.json").path))
        XCTAssertFalse(checkpointFiles(out).isEmpty)
        let second = try CLI.mpirun(3, ["locate", "--config", "configs/tiny.yaml", "--output", out.path])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("resuming"), second.stderr)
        let resumed = try report(out)["samples_from_checkpoints"] as? Int ?? 0
        print("SIGUSR1 at 2 ranks, resumed at 3 ranks: \(resumed) of 8 samples came from checkpoints")
        XCTAssertGreaterThan(resumed, 0)
        try assertMatchesReference(out)
    }

    /// Dynamic assignment: SIGUSR1 to every rank (the root's attributing thread and its MPI
    /// thread included) checkpoints and exits 75; resumed at 3 ranks, still dynamic, the same bytes.
    func testSignalThenResumeWithDynamicAssignment() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 2, out: out, extra: ["--assignment", "dynamic"]) { pids in for p in pids.values { kill(p, SIGUSR1) } }
        XCTAssertEqual(first.status, 75, first.stderr)
        XCTAssertTrue(first.stderr.contains("rank 0: stop signal; checkpointed") && first.stderr.contains("rank 1: stop signal; checkpointed"), first.stderr)
        let second = try CLI.mpirun(3, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--assignment", "dynamic"])
        XCTAssertEqual(second.status, 0, second.stderr)
        let resumed = try report(out)["samples_from_checkpoints"] as? Int ?? 0
        print("dynamic: SIGUSR1 at 2 ranks, resumed at 3 ranks: \(resumed) of 8 samples came from checkpoints")
        XCTAssertGreaterThan(resumed, 0)
        try assertMatchesReference(out)
    }

    /// With stages: SIGUSR1 to every rank of np 4 × 2 stages (two groups; each group's first
    /// stage checkpoints, the others leave with 75 too); resumed as np 3 × 3 stages, the same bytes.
    func testSignalThenResumeWithAnotherStageCount() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 4, out: out, extra: ["--stages", "2"]) { pids in for p in pids.values { kill(p, SIGUSR1) } }
        XCTAssertEqual(first.status, 75, first.stderr)
        XCTAssertTrue(first.stderr.contains("checkpointed"), first.stderr)
        XCTAssertTrue(first.stderr.contains("(stage 1): stop signal"), first.stderr)
        let second = try CLI.mpirun(3, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--stages", "3"])
        XCTAssertEqual(second.status, 0, second.stderr)
        let resumed = try report(out)["samples_from_checkpoints"] as? Int ?? 0
        print("SIGUSR1 at np 4 × 2 stages, resumed at np 3 × 3 stages: \(resumed) of 8 samples came from checkpoints")
        XCTAssertGreaterThan(resumed, 0)
        try assertMatchesReference(out)
    }

    /// kill -9 of a stage that is not its group's first (rank 3: stage 1 of group 1): the job
    /// ends, not hangs; resubmitted without stages, it resumes the groups' checkpoints.
    func testKill9OfAStageThenResubmit() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 4, out: out, extra: ["--stages", "2"]) { pids in if let p = pids[3] { kill(p, SIGKILL) } }
        XCTAssertNotEqual(first.status, 0)
        XCTAssertNotEqual(first.status, -1, "hung after a stage died")
        let second = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path])
        XCTAssertEqual(second.status, 0, second.stderr)
        print("kill -9 of stage 1 of group 1, resubmitted: \(try report(out)["samples_from_checkpoints"] ?? 0) of 8 samples from checkpoints")
        try assertMatchesReference(out)
    }

    /// kill -9 of one rank (a lost node): mpirun tears the job down (the other rank checkpoints
    /// on SIGTERM); the resubmitted job finishes with the same bytes.
    func testKill9OfOneRankThenResubmit() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 2, out: out) { pids in if let p = pids[1] { kill(p, SIGKILL) } }
        XCTAssertNotEqual(first.status, 0)
        XCTAssertNotEqual(first.status, -1, "hung after a rank died")
        let second = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path])
        XCTAssertEqual(second.status, 0, second.stderr)
        print("kill -9 of rank 1, resubmitted: \(try report(out)["samples_from_checkpoints"] ?? 0) of 8 samples from checkpoints")
        try assertMatchesReference(out)
    }

    /// SIGUSR1 after the reduction (the root writing the outputs): the run finishes with exit 0
    /// and leaves no checkpoint. Exiting 75 there would get the job requeued onto a finished
    /// run, which refuses to start again, so the job would end FAILED.
    func testSignalAfterTheReductionFinishesTheRun() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path],
                               environment: ["CNL_TEST_SIGNAL_AFTER_REDUCTION": "1"], timeout: 600)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 0: stop signal after the reduction: finishing the run"), r.stderr)
        XCTAssertTrue(r.stderr.contains("rank 1: stop signal after the reduction: finishing the run"), r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("report.json").path))
        try assertMatchesReference(out)
    }

    /// A crash in the middle of writing a checkpoint leaves a partial temporary file; the
    /// previous checkpoint (under the real name) survives and is the one resumed.
    func testCrashWhileWritingACheckpoint() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 2, out: out, environment: ["CNL_TEST_CRASH_DURING_CHECKPOINT": "3"], interrupt: nil)
        XCTAssertNotEqual(first.status, 0)
        XCTAssertTrue(first.stderr.contains("crashing while writing checkpoint 3"), first.stderr)
        let files = checkpointFiles(out)
        XCTAssertTrue(files.contains { $0.contains(".tmp-") }, "the half-written file stays beside the checkpoint: \(files)")
        XCTAssertTrue(files.contains("g0-r0.cnlck") || files.contains("g0-r1.cnlck"), "\(files)")
        let second = try CLI.run(["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--threads", "1", "--resume"])
        XCTAssertEqual(second.status, 0, second.stderr)
        let resumed = try report(out)["samples_from_checkpoints"] as? Int ?? 0
        print("crash while writing a checkpoint: resumed \(resumed) of 8 samples from the previous checkpoints")
        XCTAssertGreaterThanOrEqual(resumed, 2, "each rank had 2 committed checkpoints before the crash")
        try assertMatchesReference(out)
    }

    /// Truncated, bit-flipped and foreign checkpoints are refused with the file and the reason;
    /// after each refusal the good checkpoints still resume to the same bytes.
    func testDamagedOrForeignCheckpointsAreRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let first = try interruptedRun(np: 2, out: out) { pids in for p in pids.values { kill(p, SIGTERM) } }
        XCTAssertEqual(first.status, 75, first.stderr)
        let victim = out.appendingPathComponent("checkpoints/g0-r1.cnlck")
        let good = try Data(contentsOf: victim)
        func attempt(_ extra: [String] = []) throws -> CLIResult {
            try CLI.run(["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--threads", "1"] + extra)
        }
        try good.prefix(good.count - 100).write(to: victim)
        var r = try attempt()
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(victim.path) && r.stderr.contains("damaged checkpoint"), r.stderr)
        var flipped = good
        flipped[flipped.count / 2] ^= 0x10
        try flipped.write(to: victim)
        r = try attempt()
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("checksum mismatch"), r.stderr)
        try good.write(to: victim)
        r = try attempt(["--steps", "2"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("checkpoint of a different run") && r.stderr.contains("steps (this run: 2, checkpoint: 3)"), r.stderr)
        r = try attempt(["--limit", "7", "--grid", "2,3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("samples (this run: 7, checkpoint: 8)"), r.stderr)
        for line in r.stderr.split(separator: "\n") where line.hasPrefix("cnl: error") { print("refused: \(line)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("report.json").path))
        r = try attempt()
        XCTAssertEqual(r.status, 0, r.stderr)
        try assertMatchesReference(out)
    }

    /// The per-sample store: `cnl converge` on the run's own split equals the in-run Appendix E
    /// curve; re-drawn splits give bands; `cnl rescore` equals the run's own masks.
    func testStoreConvergeAndRescore() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--save-per-sample",
                                   "--store-precision", "f64", "--grid", "1,2,3,4", "--sigma", "3,6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let store = try report(out)["per_sample_store"] as! [String: Any]
        print("per-sample store (f64): \(store)")
        XCTAssertEqual(store["samples"] as? Int, 8)
        let c = try CLI.run(["converge", out.path])
        XCTAssertEqual(c.status, 0, c.stderr)
        let inRun = try String(contentsOf: out.appendingPathComponent("convergence.csv"), encoding: .utf8).split(separator: "\n").dropFirst()
        let offline = try String(contentsOf: out.appendingPathComponent("converge/curves.csv"), encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertEqual(offline.map { $0.split(separator: ",", maxSplits: 1)[1] }, Array(inRun), "converge reproduces the in-run curve")
        XCTAssertEqual(inRun.count, 8, "4 sizes × 2 σ")
        let bands = try CLI.run(["converge", out.path, "--seeds", "5", "--grid", "2,4"])
        XCTAssertEqual(bands.status, 0, bands.stderr)
        print(bands.stdout)
        let summary = try String(contentsOf: out.appendingPathComponent("converge/summary.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(summary.count, 1 + 2 * 2)
        XCTAssertTrue(summary.dropFirst().allSatisfy { $0.split(separator: ",")[2] == "5" }, "5 draws per point")
        let svg = try String(contentsOf: out.appendingPathComponent("converge/convergence.svg"), encoding: .utf8)
        XCTAssertTrue(svg.contains("overlap-band"))
        let rescore = try CLI.run(["rescore", out.path, "--sigma", "6"])
        XCTAssertEqual(rescore.status, 0, rescore.stderr)
        let mine = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("rescore-std-sigma6.json"))) as! [[String: Any]]
        let results = try report(out)["results"] as! [[String: Any]]
        let six = results.first { ($0["sigma"] as? Double) == 6 }!
        XCTAssertEqual(try JSONSerialization.data(withJSONObject: mine[0], options: .sortedKeys),
                       try JSONSerialization.data(withJSONObject: six, options: .sortedKeys))
        // The README's Python reader of the store, run as documented: the mean of the stored
        // (f64) per-sample scores is the run's Score.
        let readme = try String(contentsOf: CLI.repoRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let afterTitle = try XCTUnwrap(readme.range(of: "Reading the store from Python"))
        let open = try XCTUnwrap(readme.range(of: "```python\n", range: afterTitle.upperBound..<readme.endIndex))
        let close = try XCTUnwrap(readme.range(of: "```", range: open.upperBound..<readme.endIndex))
        var snippet = String(readme[open.upperBound..<close.lowerBound])
        XCTAssertTrue(snippet.contains("run = \"runs/gsm8k-final\""))
        snippet = "import sys\n" + snippet.replacingOccurrences(of: "run = \"runs/gsm8k-final\"", with: "run = sys.argv[1]") + """
        from safetensors.numpy import load_file
        mean = np.mean([scores[i] for i in sorted(scores)], axis=0)
        ref = load_file(run + "/scores.safetensors")["Score"]
        assert len(scores) == 8 and mean.shape == (30, 1536)
        assert np.abs(mean - ref).max() <= 1e-12 * np.abs(ref).max(), np.abs(mean - ref).max()
        print("README reader ok")
        """
        let py = try CLI.python(["-c", snippet, out.path])
        XCTAssertEqual(py.status, 0, py.stderr + py.stdout)
        XCTAssertTrue(py.stdout.contains("README reader ok"))
        let bad = try CLI.run(["converge", out.path, "--grid", "9"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--grid"), bad.stderr)
    }
}
