// `cnl enhance` end to end on SmolLM2: the tuned slices against float64 PyTorch (torch.optim.Adam
// over the same batches), the delta file through numpy (the README's recipe) and through
// `cnl evaluate --delta`, the same bytes for np 1, 2 and 3 and after a resume, and every refused input.
import Coordinator
import Engine
import Foundation
import Shard
import XCTest

final class EnhanceCommandTests: XCTestCase {
    static let model = ".assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"

    /// A dataset config in `dir` (name.yaml) over GSM8K records offset+1 … offset+limit.
    static func gsm8k(_ dir: URL, _ name: String, offset: Int, limit: Int, task: Bool = true, model: String = model) throws -> String {
        let path = dir.appendingPathComponent("\(name).yaml").path
        try """
        model: \(model)
        dataset:
          path: .assets/data/gsm8k/test.jsonl
          prompt: "Question: {question}\\nAnswer:"
          answer: " {answer_final}"
          offset: \(offset)
          limit: \(limit)
        \(task ? "  task: generate\n  max_new_tokens: 4" : "")
        output: \(dir.appendingPathComponent("unused").path)

        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Training records 9–16 (8 samples), evaluation records 101–104.
    static func configs(_ dir: URL) throws -> (train: String, eval: String) {
        (try gsm8k(dir, "train", offset: 8, limit: 8, task: false), try gsm8k(dir, "eval", offset: 100, limit: 4))
    }

    /// Two epochs of batches of 4 (2 batches each) of the located arm and one random arm.
    func enhance(_ np: Int, _ run: String, _ c: (train: String, eval: String), out: String, extra: [String] = [],
                 environment: [String: String] = [:]) throws -> CLIResult {
        try CLI.mpirun(np, ["enhance", run, "--train", c.train, "--eval", c.eval, "--epochs", "1,2", "--lr", "1e-4", "--batch-size", "4",
                            "--arms", "located,random", "--random-seeds", "1", "--output", out] + extra, environment: environment)
    }

    /// The training set's token ids as cnl reads them, for the Python side.
    func items(_ config: String, training: Bool, model: String = model) throws -> String {
        let loaded = try ModelRegistry.load(path: model.hasPrefix("/") ? model : CLI.repoRoot.appendingPathComponent(model).path)
        let set = try EvaluationSet.load(configPath: config, config: try RunConfig.load(path: config), tokenizer: try loaded.requireTokenizer(),
                                         contextLength: loaded.model.dimensions.contextLength, training: training)
        let json = try JSONSerialization.data(withJSONObject: set.items.map { ["prompt": $0.prompt, "answer": $0.gold] })
        let path = (config as NSString).deletingPathExtension + "-items.json"
        try json.write(to: URL(fileURLWithPath: path))
        return path
    }

    func python(_ args: [String]) throws -> [String: Any] {
        let r = try CLI.python([CLI.repoRoot.appendingPathComponent("scripts/oracle/check_enhance.py").path] + args)
        XCTAssertEqual(r.status, 0, r.stderr)
        let line = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:]
    }

    func bytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// np 1, 2, 3 (and np 1 with 2 threads): the same delta bytes and tables; the located arm's epoch-1 slices equal float64
    /// torch.optim.Adam's; the epoch-2 delta applied by numpy and by `cnl evaluate --delta` gives
    /// the same answer log-likelihoods; a study resumed from its epoch-1 state ends in the same bytes.
    func testSlicesMatchPyTorchForAnyRankCountAndAfterResume() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let run = try EraseCommandTests.tinyRun.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try Self.configs(dir)
        let deltas = ["tiny_located-epoch1", "tiny_located-epoch2", "tiny_random-seed0-epoch1", "tiny_random-seed0-epoch2"]
        func outputs(_ out: String) throws -> [Data] {
            try deltas.map { try bytes("\(out)/deltas/\($0).safetensors") } + ["enhance.csv", "cross.csv", "enhance.svg", "cross.svg"].map { try bytes("\(out)/\($0)") }
        }
        var reference: [Data] = []
        // np 1, 2, 3, and np 1 with two sample workers (each rank's share of a batch two at a time;
        // the delta bytes only: its evaluations run on two BLAS threads, whose float32 sums may
        // differ in the last bit from one thread's).
        for (np, threads) in [(1, 1), (2, 1), (3, 1), (1, 2)] {
            let out = dir.appendingPathComponent(threads == 1 ? "np\(np)" : "np\(np)-threads\(threads)").path
            let r = try enhance(np, run, c, out: out, extra: ["--threads", "\(threads)"])
            XCTAssertEqual(r.status, 0, r.stderr)
            guard r.status == 0 else { return }
            var got = try outputs(out)
            if threads > 1 { got = Array(got.prefix(deltas.count)) }
            if reference.isEmpty { reference = got } else {
                XCTAssertTrue(got == Array(reference.prefix(got.count)), "np \(np), \(threads) threads: outputs differ from np 1")
            }
        }
        // Preemption: a stop signal (injected after the 3rd batch: epoch 2, batch 1 of 2) checkpoints
        // and exits 75; the same command resumes in epoch 2 and ends in the same bytes.
        let resumed = dir.appendingPathComponent("resumed").path
        var r = try enhance(2, run, c, out: resumed, environment: ["CNL_TEST_STOP_AFTER_BATCHES": "3"])
        XCTAssertEqual(r.status, 75, r.stderr)
        XCTAssertTrue(r.stderr.contains("stop signal; the arm's state is checkpointed"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: resumed + "/enhance.json"), "a stopped study wrote its tables")
        r = try enhance(3, run, c, out: resumed)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("resuming in epoch 2 after batch 1"), r.stderr)
        XCTAssertTrue(try outputs(resumed) == reference, "the resumed study's outputs differ from the uninterrupted one's")
        // Its time covers the last invocation only, and its report says so.
        func resumedFlag(_ out: String) throws -> Bool? {
            (try JSONSerialization.jsonObject(with: bytes(out + "/enhance.json")) as? [String: Any])?["resumed"] as? Bool
        }
        XCTAssertEqual(try resumedFlag(resumed), true)
        XCTAssertEqual(try resumedFlag(dir.appendingPathComponent("np1").path), false)
        XCTAssertTrue(try String(contentsOfFile: resumed + "/enhance.md", encoding: .utf8).contains("this invocation, which resumed a study begun earlier"))

        // float64 PyTorch: the same batches and Adam from the base weights.
        let np1 = dir.appendingPathComponent("np1").path
        let trainItems = try items(c.train, training: true)
        let t = try python(["train", trainItems, "\(np1)/deltas/tiny_located-epoch1.safetensors", "--lr", "1e-4", "--batch", "4", "--seed", "0", "--epochs", "1"])
        let relL2 = t["rel_l2"] as? Double ?? .infinity, worst = t["worst_over_lr"] as? Double ?? .infinity
        XCTAssertLessThanOrEqual(relL2, 1e-3, "\(t)")
        XCTAssertLessThanOrEqual(worst, 0.1, "\(t)")

        // The delta through numpy (README) and through cnl evaluate --delta.
        let evalOut = dir.appendingPathComponent("evaluate").path
        let delta = "\(np1)/deltas/tiny_located-epoch2.safetensors"
        let saved = dir.appendingPathComponent("saved-model").path
        // (under mpirun, as the study ran: one BLAS thread, so the same float32 sums as the study's own evaluation)
        r = try CLI.mpirun(1, ["evaluate", "--config", c.eval, "--delta", delta, "--output", evalOut, "--save-model", saved])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = try String(contentsOfFile: evalOut + "/samples.csv", encoding: .utf8).split(separator: "\n").dropFirst()
        let ours = rows.map { Double($0.split(separator: ",")[5])! }
        let theirs = try python(["apply", try items(c.eval, training: false), delta])["log_likelihoods"] as? [Double] ?? []
        XCTAssertEqual(ours.count, theirs.count)
        let worstLL = zip(ours, theirs).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worstLL, 1e-4, "cnl evaluate --delta \(ours) vs numpy-patched PyTorch \(theirs)")
        // --save-model: transformers loads the directory; every value but the delta's is the base's.
        let evalItems = try items(c.eval, training: false)
        let h = try python(["saved", evalItems, delta, saved])
        let savedLL = h["log_likelihoods"] as? [Double] ?? []
        let worstSaved = zip(ours, savedLL).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertEqual(savedLL.count, ours.count, "\(h)")
        XCTAssertLessThanOrEqual(worstSaved, 1e-4, "transformers on the saved directory \(savedLL) vs cnl \(ours)")
        XCTAssertEqual(h["values_differing_from_base_plus_delta"] as? Int, 0, "\(h)")
        XCTAssertEqual((h["missing"] as? [String])?.isEmpty, true, "\(h)")
        XCTAssertGreaterThan(h["values_set_by_delta"] as? Int ?? 0, 0, "\(h)")
        let report = try JSONSerialization.jsonObject(with: bytes(np1 + "/enhance.json")) as! [String: Any]
        let arm = (report["arms"] as! [[String: Any]]).first { $0["key"] as? String == "tiny:located" }!
        let epoch2 = (arm["epochs"] as! [[String: Any]]).first { $0["epoch"] as? Int == 2 }!
        let inStudy = ((epoch2["sets"] as! [String: Any])["eval"] as! [String: Any])["log_likelihood"] as! Double
        let fromDelta = ours.reduce(0, +) / Double(ours.count)
        XCTAssertEqual(inStudy, fromDelta, accuracy: 1e-7, "the study's own evaluation and cnl evaluate --delta (samples.csv keeps 8 decimals)")
        print(String(format: "enhance: np 1/2/3 and resumed: identical deltas and tables; located epoch 1 vs float64 torch Adam: rel L2 %.1e, worst %.3f lr "
                     + "(%d values); delta via numpy vs cnl evaluate --delta: worst |Δ ll| %.1e; saved HF directory in transformers: worst |Δ ll| %.1e, "
                     + "%d of %d values set by the delta, %d others differ from the base", relL2, worst, t["values"] as? Int ?? 0, worstLL, worstSaved,
                     h["values_set_by_delta"] as? Int ?? -1, h["values"] as? Int ?? -1, h["values_differing_from_base_plus_delta"] as? Int ?? -1))
    }

    /// The without-located arm: every neuron but the located trains, the located stay erased;
    /// its delta holds all L·J neurons with the located rows zero.
    func testWithoutLocatedErasesTheLocatedAndTrainsTheRest() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let run = try EraseCommandTests.tinyRun.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try Self.configs(dir)
        let out = dir.appendingPathComponent("out").path
        let r = try CLI.mpirun(2, ["enhance", run, "--train", c.train, "--eval", c.eval, "--epochs", "1", "--lr", "1e-4",
                                   "--arms", "without-located", "--output", out], timeout: 1200)
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.status == 0 else { return }
        let located = try LocatedRun.open(run).mask(sigma: 6).located
        let delta = try NeuronDelta.read(out + "/deltas/tiny_without-located-epoch1.safetensors")
        XCTAssertEqual(delta.slices.neurons, Array(0..<(30 * 1536)))
        let D = 576
        var zeroRows = 0, changedRows = 0
        let base = try ModelRegistry.load(path: CLI.repoRoot.appendingPathComponent(Self.model).path).model
        let before = SliceParameters(model: base, slices: delta.slices).values()
        let off = Set(located)
        for (k, n) in delta.slices.neurons.enumerated() {
            let row = delta.values[k * D..<(k + 1) * D]
            if off.contains(n) { if row.allSatisfy({ $0 == 0 }) { zeroRows += 1 } } else if row != before[k * D..<(k + 1) * D] { changedRows += 1 }
        }
        XCTAssertEqual(zeroRows, located.count, "every located row is erased")
        XCTAssertGreaterThan(changedRows, (30 * 1536 - located.count) * 9 / 10, "most other rows moved")
        print("enhance without-located: \(located.count) located rows zero, \(changedRows) of \(30 * 1536 - located.count) other rows tuned")
    }

    /// Each refused input: one error line, a non-zero exit on every rank, no output files; a
    /// second study into a busy output directory.
    func testBadInputsAreRefusedBeforeTraining() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let run = try EraseCommandTests.tinyRun.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try Self.configs(dir)
        let overlapping = try Self.gsm8k(dir, "train-overlap", offset: 96, limit: 8, task: false)
        let cases: [(String, [String], String)] = [
            ("σ too high", ["--sigma", "1000"], "locates no neuron at σ = 1000"),
            ("train overlaps eval", ["--train", overlapping], "training record .assets/data/gsm8k/test.jsonl:101 is evaluation record"),
            ("lr 0", ["--lr", "0"], "--lr must be a positive finite number, got 0.0"),
            ("lr nan", ["--lr", "nan"], "--lr must be a positive finite number"),
            ("epochs not increasing", ["--epochs", "2,1"], "--epochs: the list must be strictly increasing, got 2,1"),
        ]
        for (what, args, message) in cases {
            let out = dir.appendingPathComponent("bad").path
            var full = ["enhance", run, "--eval", c.eval, "--output", out, "--arms", "located"]
            if !args.contains("--train") { full += ["--train", c.train] }
            let r = try CLI.mpirun(2, full + args)
            XCTAssertNotEqual(r.status, 0, "\(what): accepted")
            XCTAssertTrue(r.stderr.contains(message), "\(what): \(r.stderr)")
            XCTAssertEqual(r.stderr.components(separatedBy: "cnl: error:").count - 1, 1, "\(what): one error line: \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/enhance.json"), "\(what): left an output")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/deltas"), "\(what): left a delta")
        }
        // A second study into an output directory another job holds (here: this test process):
        // refused at once, naming the holder, before anything is read or written there.
        let busy = dir.appendingPathComponent("busy").path
        let held = try RunDirectoryLock.acquire(directory: busy)
        let refused = try CLI.mpirun(2, ["enhance", run, "--train", c.train, "--eval", c.eval, "--arms", "located", "--output", busy])
        assertOneLineFailure(refused, contains: ["is in use by another cnl job", "pid \(getpid())", busy + "/.lock"], outputDir: nil)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: busy), [".lock"], "the refused study wrote into the busy directory")
        held.release()
        // A delta applied to another checkpoint: refused, naming both fingerprints.
        let out = dir.appendingPathComponent("good").path
        var r = try CLI.run(["enhance", run, "--train", c.train, "--eval", c.eval, "--epochs", "1", "--arms", "located", "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/.lock"), "a finished study leaves no lock")
        let gemma = try CLI.asset("models/gemma-3-270m-q4_k_m.gguf")
        let other = try Self.gsm8k(dir, "eval-gemma", offset: 100, limit: 4, model: gemma)
        r = try CLI.mpirun(2, ["evaluate", "--config", other, "--delta", out + "/deltas/tiny_located-epoch1.safetensors", "--output", dir.appendingPathComponent("ev").path])
        XCTAssertNotEqual(r.status, 0)
        func sha256(_ p: String) throws -> String {
            String(try CLI.launch("/usr/bin/sha256sum", [p], environment: [:], timeout: 120).stdout.prefix(64))
        }
        let base = try sha256(CLI.repoRoot.appendingPathComponent(Self.model).path), gemmaSHA = try sha256(gemma)
        XCTAssertTrue(r.stderr.contains(base) && r.stderr.contains(gemmaSHA) && r.stderr.contains("apply it to its own base model"), r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "cnl: error:").count - 1, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("ev/evaluation.json").path))
    }

    /// `--save-model` of the Gemma 3 GGUF: config.json made from its metadata. transformers loads
    /// the directory as Gemma3ForCausalLM with the config it makes itself from the GGUF, every
    /// value equals transformers' own dequantization of the GGUF (the norms written back as w,
    /// not 1 + w), and the answer log-likelihoods equal cnl's.
    func testGemma3SavedModelIsTheGGUFAsTransformersReadsIt() throws {
        let gemma = try CLI.asset("models/gemma-3-270m-q4_k_m.gguf")
        let dir = try CLI.temporaryDirectory()
        let eval = try Self.gsm8k(dir, "eval-gemma", offset: 100, limit: 4, model: gemma)
        let saved = dir.appendingPathComponent("saved").path, out = dir.appendingPathComponent("ev").path
        let r = try CLI.mpirun(1, ["evaluate", "--config", eval, "--output", out, "--save-model", saved])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ours = try String(contentsOfFile: out + "/samples.csv", encoding: .utf8).split(separator: "\n").dropFirst()
            .map { Double($0.split(separator: ",")[5])! }
        let h = try python(["saved-gguf", try items(eval, training: false, model: gemma), saved, gemma])
        XCTAssertEqual(h["model_type"] as? String, "gemma3_text", "\(h)")
        XCTAssertEqual(h["architectures"] as? [String], ["Gemma3ForCausalLM"], "\(h)")
        XCTAssertEqual((h["config_differences"] as? [String]) ?? ["?"], [], "\(h)")
        XCTAssertEqual((h["missing"] as? [String]) ?? ["?"], [], "\(h)")
        let worstValue = h["worst_value_difference"] as? Double ?? .infinity
        XCTAssertLessThanOrEqual(worstValue, 1e-6, "\(h)")
        let savedLL = h["log_likelihoods"] as? [Double] ?? [], ggufLL = h["gguf_log_likelihoods"] as? [Double] ?? []
        XCTAssertEqual(savedLL.count, ours.count, "\(h)")
        let worstLL = zip(ours, savedLL).map { abs($0 - $1) }.max() ?? .infinity
        let worstGGUF = zip(savedLL, ggufLL).map { abs($0 - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worstLL, 1e-4, "cnl \(ours) vs transformers on the saved directory \(savedLL)")
        XCTAssertLessThanOrEqual(worstGGUF, 1e-4, "saved directory \(savedLL) vs transformers on the GGUF \(ggufLL)")
        print(String(format: "gemma3 --save-model: %d tensors, worst value vs transformers' GGUF dequantization %.1e; answer LL: cnl vs saved %.1e, saved vs GGUF %.1e",
                     h["tensors"] as? Int ?? -1, worstValue, worstLL, worstGGUF))
    }
}
