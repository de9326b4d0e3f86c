// `cnl locate` end to end on SmolLM2: same bytes for any rank count, Python-readable outputs, bad input.
import Foundation
import XCTest

final class LocateCommandTests: XCTestCase {
    static let model = ".assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The tiny config (8 GSM8K samples, 2 answer tokens each, S = 3) as one process and under mpirun with 1–4 ranks
    /// (oversubscribed): scores.safetensors must be byte-identical and the metrics identical.
    func testRankCountsGiveIdenticalScoresAndMetrics() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var digests: [String: Data] = [:]
        var metrics: [String: String] = [:]
        var neurons: [String: Data] = [:]
        for launch in ["single", "np1", "np2", "np3", "np4"] {
            let out = dir.appendingPathComponent(launch).path
            let args = ["locate", "--config", "configs/tiny.yaml", "--output", out]
            let r = launch == "single" ? try CLI.run(args + ["--threads", "1"]) : try CLI.mpirun(Int(launch.dropFirst(2))!, args)
            XCTAssertEqual(r.status, 0, "\(launch): \(r.stderr)")
            guard r.status == 0 else { continue }
            digests[launch] = try Data(contentsOf: URL(fileURLWithPath: out + "/scores.safetensors"))
            neurons[launch] = try Data(contentsOf: URL(fileURLWithPath: out + "/neurons.json"))
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
            let numbers = try JSONSerialization.data(withJSONObject: ["results": report["results"]!, "convergence": report["convergence"]!,
                                                                      "fingerprints": report["fingerprints"]!], options: [.sortedKeys])
            metrics[launch] = String(decoding: numbers, as: UTF8.self)
            let expectedRanks = launch == "single" ? 1 : Int(launch.dropFirst(2))!
            XCTAssertEqual(report["ranks"] as? Int, expectedRanks)
            let perRank = (report["timings"] as! [String: Any])["per_rank"] as! [[String: Any]]
            XCTAssertEqual(perRank.map { $0["samples"] as! Int }.reduce(0, +), 8, "\(launch): every sample exactly once")
            XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: out).contains { $0.contains(".tmp-") })
            print("locate \(launch): \(r.stdout.split(separator: "\n").prefix(2).joined(separator: " | "))")
        }
        let reference = try XCTUnwrap(digests["single"])
        XCTAssertGreaterThan(reference.count, 3 * 8 * 46_080 + 3 * 46_080, "3 float64 and 3 uint8 [30, 1536] tensors plus header")
        for (launch, bytes) in digests { XCTAssertTrue(bytes == reference, "\(launch): scores.safetensors differs from the single-process run") }
        for (launch, m) in metrics { XCTAssertEqual(m, metrics["single"], launch) }
        for (launch, n) in neurons { XCTAssertTrue(n == neurons["single"], launch) }

        // A Python user loads the scores; Eq. 8 recomputed in numpy gives the same masks, and
        // the whole-data Score is the sample-weighted mean of the halves' scores.
        let script = """
        import sys, json, numpy as np
        from safetensors.numpy import load_file
        t = load_file(sys.argv[1] + "/scores.safetensors")
        r = json.load(open(sys.argv[1] + "/report.json"))
        na, nb = r["data"]["size_a"], r["data"]["size_b"]
        for k in ("Score", "Score_a", "Score_b"):
            assert t[k].dtype == np.float64 and t[k].shape == (30, 1536), (k, t[k].dtype, t[k].shape)
        mix = (na * t["Score_a"] + nb * t["Score_b"]) / (na + nb)
        assert np.abs(mix - t["Score"]).max() <= 1e-12 * np.abs(t["Score"]).max()
        for name, key in (("Score", "Mask_sigma6"), ("Score_a", "Mask_a_sigma6"), ("Score_b", "Mask_b_sigma6")):
            s = t[name]
            mask = (np.abs(s - s.mean()) > 6 * s.std()).astype(np.uint8)
            assert t[key].dtype == np.uint8 and (t[key] == mask).all(), key
        a, b = t["Mask_a_sigma6"].astype(bool), t["Mask_b_sigma6"].astype(bool)
        inter = (a & b).sum()
        res = r["results"][0]["agreement"]
        assert abs(res["overlap"] - (inter / a.sum() + inter / b.sum()) / 2) < 1e-12
        assert abs(res["iou"] - inter / (a | b).sum()) < 1e-12
        n = json.load(open(sys.argv[1] + "/neurons.json"))[0]
        assert n["count"] == int(t["Mask_sigma6"].sum()) == len(n["neurons"])
        print("python ok", int(t["Mask_sigma6"].sum()), "neurons")
        """
        let py = try CLI.python(["-c", script, dir.appendingPathComponent("single").path])
        XCTAssertEqual(py.status, 0, py.stderr + py.stdout)
    }

    // MARK: Bad input: one line on the root naming what is wrong, non-zero exit, no outputs.

    /// A config over `data` (a JSONL written by the test) with the given template lines.
    func writeConfig(_ dir: URL, data: String, prompt: String = "Question: {question}\\nAnswer:", answer: String = " {answer_final}",
                     extra: String = "") throws -> String {
        let dataPath = dir.appendingPathComponent("data.jsonl").path
        try data.write(toFile: dataPath, atomically: true, encoding: .utf8)
        let config = """
        model: \(CLI.repoRoot.appendingPathComponent(Self.model).path)
        dataset:
          path: \(dataPath)
          prompt: "\(prompt)"
          answer: "\(answer)"
        steps: 1
        output: \(dir.appendingPathComponent("run").path)
        \(extra)
        """
        let path = dir.appendingPathComponent("config.yaml").path
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func jsonLine(_ fields: [String: String]) -> String {
        String(decoding: try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]), as: UTF8.self)
    }

    static let goodLines = (1...4).map { jsonLine(["question": "What is \($0) + \($0)?", "answer": "It is \(2 * $0).\n#### \(2 * $0)"]) }

    func testMalformedJSONLLineNamesItsLine() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines = Self.goodLines
        lines[2] = "{\"question\": \"broken\", \"answer\": \"#### 1\""
        let config = try writeConfig(dir, data: lines.joined(separator: "\n"))
        assertOneLineFailure(try CLI.run(["locate", "--config", config]), contains: ["data.jsonl:3"], outputDir: dir.appendingPathComponent("run"))
    }

    func testMissingTemplateFieldNamesFieldAndLine() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines = Self.goodLines
        lines[1] = Self.jsonLine(["prompt": "no question here", "answer": "#### 1"])
        let config = try writeConfig(dir, data: lines.joined(separator: "\n"))
        assertOneLineFailure(try CLI.run(["locate", "--config", config]), contains: ["data.jsonl:2", "'question'"], outputDir: dir.appendingPathComponent("run"))
    }

    func testEmptyAnswerIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines = Self.goodLines
        lines[3] = Self.jsonLine(["question": "What?", "answer": "nothing follows ####   "])
        let config = try writeConfig(dir, data: lines.joined(separator: "\n"), answer: "{answer_final}")
        assertOneLineFailure(try CLI.run(["locate", "--config", config]), contains: ["data.jsonl:4", "answer is empty"], outputDir: dir.appendingPathComponent("run"))
    }

    func testSequenceLongerThanContextIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var lines = Self.goodLines
        let long = Array(repeating: "apples and pears", count: 3000).joined(separator: " ")
        lines[0] = Self.jsonLine(["question": long, "answer": "#### 1"])
        let config = try writeConfig(dir, data: lines.joined(separator: "\n"))
        assertOneLineFailure(try CLI.run(["locate", "--config", config]), contains: ["data.jsonl:1", "context of 8192"], outputDir: dir.appendingPathComponent("run"))
    }

    /// Under mpirun: the root says it once and every rank exits non-zero (no hang).
    func testFewerSamplesThanRanksFailsEveryRank() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try writeConfig(dir, data: Self.goodLines.prefix(2).joined(separator: "\n"))
        let r = try CLI.mpirun(3, ["locate", "--config", config], timeout: 300)
        assertOneLineFailure(r, contains: ["2 samples for 3 ranks"], outputDir: dir.appendingPathComponent("run"))
        // mpirun reports how many ranks exited non-zero.
        XCTAssertTrue(r.stderr.contains("exited") || r.stderr.contains("non-zero"), r.stderr)
    }

    func testNonPositiveSigmaIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try writeConfig(dir, data: Self.goodLines.joined(separator: "\n"))
        for bad in ["0", "-2"] {
            let r = try CLI.mpirun(2, ["locate", "--config", config, "--sigma=\(bad)"], timeout: 300)
            assertOneLineFailure(r, contains: ["sigma", "positive"], outputDir: dir.appendingPathComponent("run"))
        }
        try "sigma: [6, 0]\n".write(toFile: dir.appendingPathComponent("extra.yaml").path, atomically: true, encoding: .utf8)
        let inFile = try writeConfig(dir, data: Self.goodLines.joined(separator: "\n"), extra: "sigma: [6, 0]")
        assertOneLineFailure(try CLI.run(["locate", "--config", inFile]), contains: ["config.yaml", "sigma"], outputDir: nil)
    }

    func testMissingModelIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try writeConfig(dir, data: Self.goodLines.joined(separator: "\n"))
        let r = try CLI.mpirun(2, ["locate", "--config", config, "--model", "/nonexistent/model.gguf"], timeout: 300)
        assertOneLineFailure(r, contains: ["/nonexistent/model.gguf"], outputDir: dir.appendingPathComponent("run"))
    }

    /// A finished run is never overwritten by accident; --force does it.
    func testFinishedRunIsRefusedUnlessForced() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try writeConfig(dir, data: Self.goodLines.joined(separator: "\n"), extra: "max_answer_tokens: 1")
        let first = try CLI.run(["locate", "--config", config, "--threads", "1"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let report = dir.appendingPathComponent("run/report.json")
        let before = try Data(contentsOf: report)
        let again = try CLI.run(["locate", "--config", config])
        assertOneLineFailure(again, contains: ["already holds a finished run", "--force"], outputDir: nil)
        XCTAssertEqual(try Data(contentsOf: report), before, "the finished run is untouched")
        let forced = try CLI.run(["locate", "--config", config, "--force", "--threads", "1"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertNotEqual(try Data(contentsOf: report), before, "report rewritten (new timings and date)")
    }

    /// A rank killed mid-run brings the whole job down: mpirun exits non-zero, nothing hangs,
    /// and no report.json claims a finished run.
    func testKilledRankBringsTheJobDown() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        // Kill rank 1 in the middle of its work: as soon as its first checkpoint (written after
        // its first sample, --checkpoint-every 1) appears. S = 19 makes each of its 4 samples
        // take about a second, so the kill lands before its last one (a fixed delay raced a
        // run that had become faster than the delay).
        final class Fired: @unchecked Sendable { var pid: pid_t = 0 }
        let fired = Fired()
        let firstCheckpoint = out.appendingPathComponent("checkpoints/g0-r1.cnlck").path
        let killer = Thread {
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline {
                Thread.sleep(forTimeInterval: 0.05)
                guard FileManager.default.fileExists(atPath: firstCheckpoint),
                      let pid = Self.processWithEnvironment("OMPI_COMM_WORLD_RANK=1", binary: CLI.binary, argument: out.path) else { continue }
                if kill(pid, SIGKILL) == 0 { fired.pid = pid }
                return
            }
        }
        killer.start()
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--steps", "19", "--checkpoint-every", "1"],
                               timeout: 300)
        XCTAssertNotEqual(fired.pid, 0, "rank 1 was never found and killed")
        XCTAssertNotEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(r.status, -1, "the job hung after a rank died")
        print("mpirun after kill -9 of rank 1 (pid \(fired.pid)): exit \(r.status); \(r.stderr.split(separator: "\n").filter { $0.contains("signal") || $0.contains("exited") }.prefix(2).joined(separator: " | "))")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("report.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("scores.safetensors").path))
    }

    /// A running process of `binary` whose environment holds `entry` and whose command line
    /// contains `argument` (a test's unique output directory, so other runs are never hit).
    static func processWithEnvironment(_ entry: String, binary: String, argument: String) -> pid_t? {
        guard let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        for p in pids {
            guard let pid = pid_t(p),
                  let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(p)/exe"),
                  URL(fileURLWithPath: exe).resolvingSymlinksInPath().path == URL(fileURLWithPath: binary).resolvingSymlinksInPath().path,
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(p)/cmdline"),
                  cmdline.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == argument }),
                  let env = FileManager.default.contents(atPath: "/proc/\(p)/environ") else { continue }
            if env.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == entry }) { return pid }
        }
        return nil
    }
}
