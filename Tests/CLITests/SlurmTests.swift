// The slurm/ templates on a real one-node Slurm cluster: same scores as mpirun, and the checkpoint/requeue plumbing.
import Foundation
import XCTest

final class SlurmTests: XCTestCase {
    struct SlurmUnavailable: Error {}

    static let cluster = CLI.repoRoot.appendingPathComponent("scripts/slurm-cluster.sh").path

    /// Path of a Slurm client command; fails (never skips) when Slurm is not installed.
    func tool(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        XCTFail("Slurm is not installed (no \(name)): run `make setup-slurm` (scripts/setup.sh --slurm)", file: file, line: line)
        throw SlurmUnavailable()
    }

    /// `scripts/slurm-cluster.sh start` (idempotent): munged, slurmctld, slurmd, node idle.
    func startCluster(file: StaticString = #filePath, line: UInt = #line) throws {
        _ = try tool("sbatch", file: file, line: line)
        let r = try CLI.launch("/bin/bash", [Self.cluster, "start"], environment: [:], timeout: 180)
        guard r.status == 0 else {
            XCTFail("cannot start the one-node Slurm cluster (scripts/slurm-cluster.sh start, exit \(r.status)):\n\(r.stdout)\(r.stderr)",
                    file: file, line: line)
            throw SlurmUnavailable()
        }
    }

    /// Slurm command output, trimmed ("" on failure).
    func slurm(_ name: String, _ args: [String]) -> String {
        guard let path = try? tool(name), let r = try? CLI.launch(path, args, environment: [:], timeout: 60), r.status == 0 else { return "" }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Cancels every job named `name` (after a timeout, so nothing is left in the queue).
    func cancel(jobName name: String) {
        _ = slurm("scancel", ["--name", name])
    }

    /// `sbatch --wait` of the one-node template with configs/tiny.yaml, 2 tasks, the repo's
    /// release binary: exit 0, and scores.safetensors byte-identical to `mpirun -np 2`.
    func testOneNodeTemplateMatchesMpirunBitForBit() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        try startCluster()
        let sbatch = try tool("sbatch")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let slurmOut = dir.appendingPathComponent("slurm").path
        let log = dir.appendingPathComponent("job.log").path
        let name = "cnl-test-\(UUID().uuidString.prefix(8))"
        let cnl = CLI.repoRoot.appendingPathComponent(".build/release/cnl").path

        let started = Date()
        // --time: Slurm itself ends a stuck job; the launch timeout ends a stuck sbatch.
        let job = try CLI.launch(sbatch, ["--wait", "--job-name=\(name)", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
                                          "--overcommit", "--time=20", "--output=\(log)", "--export=ALL,CNL_BIN=\(cnl),CNL_EXTRA_ARGS=--checkpoint-every 1",
                                          "slurm/locate-one-node.sbatch", "configs/tiny.yaml", slurmOut],
                                 environment: [:], timeout: 1500)
        let wall = Date().timeIntervalSince(started)
        if job.status == -1 { cancel(jobName: name) }
        let jobLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? "(no log at \(log))"
        XCTAssertNotEqual(job.status, -1, "sbatch --wait timed out; job log:\n\(jobLog)")
        XCTAssertEqual(job.status, 0, "sbatch --wait: \(job.stdout)\(job.stderr)\njob log:\n\(jobLog)")
        guard job.status == 0 else { return }
        XCTAssertTrue(jobLog.contains("2 ranks"), jobLog)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: slurmOut + "/report.json"))) as! [String: Any]
        XCTAssertEqual(report["ranks"] as? Int, 2, "the srun step is one MPI job of 2 ranks")
        // The job's own run time (sbatch --wait polls the controller, so its wall time is longer).
        let info = slurm("scontrol", ["show", "job", "--oneliner", slurm("squeue", ["-h", "-t", "all", "-n", name, "-o", "%i"])])
        let runTime = info.split(separator: " ").first { $0.hasPrefix("RunTime=") } ?? "RunTime=?"
        print("slurm: sbatch --wait of slurm/locate-one-node.sbatch (tiny, 2 tasks): exit \(job.status), \(String(format: "%.1f", wall)) s wall, job \(runTime)")

        let mpiOut = dir.appendingPathComponent("mpirun").path
        let plain = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", mpiOut], timeout: 1200)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        guard plain.status == 0 else { return }
        let viaSlurm = try Data(contentsOf: URL(fileURLWithPath: slurmOut + "/scores.safetensors"))
        let viaMpirun = try Data(contentsOf: URL(fileURLWithPath: mpiOut + "/scores.safetensors"))
        XCTAssertGreaterThan(viaSlurm.count, 1_000_000)
        XCTAssertTrue(viaSlurm == viaMpirun, "scores.safetensors under srun --mpi=pmix differs from mpirun -np 2")
        print("slurm: scores.safetensors (\(viaSlurm.count) bytes) byte-identical to mpirun -np 2: \(viaSlurm == viaMpirun)")
    }

    /// A step that "succeeds" without running cnl to the end (srun exits 0 although its tasks
    /// never started, as Slurm 22.05 did on a requeued job's rerun; here: `true` in place of
    /// cnl) must not pass for a finished run: every template checks for a fresh report.json
    /// and fails the job, naming the run directory.
    func testStepThatExitsZeroWithoutAReportFailsTheJob() throws {
        try startCluster()
        let sbatch = try tool("sbatch")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for template in ["locate-one-node", "locate-multi-node"] {
            let out = dir.appendingPathComponent(template).path
            let log = dir.appendingPathComponent("\(template).log").path
            let name = "cnl-test-\(UUID().uuidString.prefix(8))"
            let job = try CLI.launch(sbatch, ["--wait", "--job-name=\(name)", "--nodes=1", "--ntasks-per-node=2", "--overcommit", "--time=5",
                                              "--no-requeue", "--output=\(log)", "--export=ALL,CNL_BIN=/bin/true",
                                              "slurm/\(template).sbatch", "configs/tiny.yaml", out],
                                     environment: [:], timeout: 300)
            if job.status == -1 { cancel(jobName: name) }
            let jobLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? "(no log at \(log))"
            XCTAssertEqual(job.status, 1, "\(template): a step without a report must fail the job; log:\n\(jobLog)")
            XCTAssertTrue(jobLog.contains("error: srun exited 0 but no new \(out)/report.json"), "\(template):\n\(jobLog)")
        }
    }

    /// Preemption under Slurm with the real cnl: `scancel --signal=USR1 --batch` (what
    /// --signal=B:USR1@120 sends before the time limit) reaches the batch shell, whose trap
    /// forwards it through srun to every rank; each checkpoints and exits 75, the template
    /// requeues the job, and the rerun resumes and ends with the uninterrupted run's bytes.
    func testUSR1CheckpointsRequeuesAndResumesToTheSameBytes() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        try startCluster()
        let sbatch = try tool("sbatch")
        let reference = try ResumeTests.reference.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run").path
        let log = dir.appendingPathComponent("job.log").path
        let cnl = CLI.repoRoot.appendingPathComponent(".build/release/cnl").path
        let name = "cnl-test-\(UUID().uuidString.prefix(8))"

        // Not `sbatch --wait`: it may return as soon as the job is requeued. The job's state is
        // polled instead until the requeued run has finished.
        let submitted = try CLI.launch(sbatch, ["--parsable", "--job-name=\(name)", "--nodes=1", "--ntasks-per-node=2", "--overcommit",
                                                "--time=20", "--output=\(log)", "--export=ALL,CNL_BIN=\(cnl),CNL_EXTRA_ARGS=--checkpoint-every 1",
                                                "slurm/locate-one-node.sbatch", "configs/tiny.yaml", out], environment: [:], timeout: 120)
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        guard submitted.status == 0, !id.isEmpty else { return }
        var finished = false
        defer { if !finished { _ = slurm("scancel", [id]) } }

        func waitFor(_ what: String, seconds: Double, _ condition: () -> Bool) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline { if condition() { return true }; Thread.sleep(forTimeInterval: 0.25) }
            XCTFail("timed out waiting for \(what); log:\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            return false
        }
        func job() -> String { slurm("scontrol", ["show", "job", "--oneliner", id]) }
        func field(_ key: String) -> String? {
            job().split(separator: " ").first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
        // Rank 1's first checkpoint (one per sample here) marks a run in the middle of its
        // samples: 3 of its 4 are still to go, seconds of work, when the signal arrives.
        guard waitFor("the run to start", seconds: 180, { FileManager.default.fileExists(atPath: out + "/checkpoints/g0-r1.cnlck") })
        else { return }
        _ = slurm("scancel", ["--signal=USR1", "--batch", id])
        guard waitFor("the job to be requeued", seconds: 120, { field("Restarts") == "1" }) else { return }
        // Slurm holds a requeued job back until its credentials have expired (BeginTime = requeue
        // + cred_expire + 1 s; the test cluster sets AuthInfo=cred_expire=15). Forcing an earlier
        // start (scontrol update StartTime=now) raced with the revocation of the first run's
        // credentials: the rerun's batch script was refused ("already killed") or its srun step
        // failed to launch ("task 0 launch failed") and srun still exited 0.
        let ended = ["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"]
        guard waitFor("the requeued job to finish", seconds: 900, { field("JobState").map(ended.contains) ?? false }) else { return }
        finished = true
        let jobLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertEqual(field("JobState"), "COMPLETED", "\(job())\nlog:\n\(jobLog)")
        XCTAssertEqual(field("ExitCode"), "0:0", jobLog)
        XCTAssertEqual(field("Restarts"), "1")
        XCTAssertTrue(jobLog.contains("requeueing job \(id)"), jobLog)
        XCTAssertTrue(jobLog.contains("rank 0: stop signal; checkpointed") && jobLog.contains("rank 1: stop signal; checkpointed"),
                      "both ranks checkpointed:\n\(jobLog)")
        XCTAssertTrue(jobLog.contains("resuming"), "the rerun resumed:\n\(jobLog)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        print("slurm: USR1 → checkpoint → requeue → resume: \(report["samples_from_checkpoints"] ?? "?") of 8 samples from checkpoints")
        let scores = try Data(contentsOf: URL(fileURLWithPath: out + "/scores.safetensors"))
        XCTAssertTrue(scores == reference, "scores.safetensors after requeue differs from the uninterrupted run")
    }

    /// A failing rank under srun (kill -9 of rank 1 of the multi-node template, mid-run): the
    /// step ends at once (--kill-on-bad-exit=1), the survivor gets SIGTERM and checkpoints
    /// before KillWait's SIGKILL, the job leaves the queue, and a resubmission resumes from
    /// that checkpoint and ends in the uninterrupted run's bytes.
    func testFailingRankEndsTheStepAndTheSurvivorCheckpoints() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        try startCluster()
        let sbatch = try tool("sbatch")
        let reference = try ResumeTests.reference.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run").path
        let log = dir.appendingPathComponent("job.log").path
        let cnl = CLI.repoRoot.appendingPathComponent(".build/release/cnl").path
        let name = "cnl-test-\(UUID().uuidString.prefix(8))"
        let submitted = try CLI.launch(sbatch, ["--parsable", "--job-name=\(name)", "--nodes=1", "--ntasks-per-node=2", "--overcommit", "--no-requeue",
                                                "--time=20", "--output=\(log)", "--export=ALL,CNL_BIN=\(cnl),CNL_EXTRA_ARGS=--progress-every 0.1",
                                                "slurm/locate-multi-node.sbatch", "configs/tiny.yaml", out], environment: [:], timeout: 120)
        XCTAssertEqual(submitted.status, 0, submitted.stderr)
        let id = submitted.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        guard submitted.status == 0, !id.isEmpty else { return }
        var ended = false
        defer { if !ended { _ = slurm("scancel", [id]) } }
        // Mid-run: the root's first progress line past 0 (the default --checkpoint-every 10 keeps
        // every finished sample of this run in memory only, until a signal or the end).
        var victim: pid_t?
        let deadline = Date().addingTimeInterval(180)
        while Date() < deadline, victim == nil {
            Thread.sleep(forTimeInterval: 0.05)
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard text.contains("progress: 1/") || text.contains("progress: 2/") else { continue }
            victim = LocateCommandTests.processWithEnvironment("SLURM_PROCID=1", binary: CLI.binary, argument: out)
        }
        guard let victim else { return XCTFail("rank 1 never found mid-run; log:\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")") }
        XCTAssertEqual(kill(victim, SIGKILL), 0)
        let killed = Date()
        while Date().timeIntervalSince(killed) < 120, !slurm("squeue", ["-h", "-j", id]).isEmpty { Thread.sleep(forTimeInterval: 0.2) }
        let seconds = Date().timeIntervalSince(killed)
        ended = slurm("squeue", ["-h", "-j", id]).isEmpty
        let jobLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertTrue(ended, "the job still runs 120 s after a rank was killed:\n\(jobLog)")
        XCTAssertTrue(jobLog.contains("rank 0: stop signal; checkpointed"), "the survivor checkpointed on SIGTERM:\n\(jobLog)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/report.json"))

        let resumed = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        let kept = report["samples_from_checkpoints"] as? Int ?? 0
        XCTAssertGreaterThan(kept, 0, "the survivor's checkpoint held its finished samples")
        print("slurm: kill -9 of rank 1 → job gone after \(String(format: "%.1f", seconds)) s; \(kept) of 8 samples kept in checkpoints; resumed to the same bytes")
        XCTAssertTrue(try Data(contentsOf: URL(fileURLWithPath: out + "/scores.safetensors")) == reference)
    }
}
