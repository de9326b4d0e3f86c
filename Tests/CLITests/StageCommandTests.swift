// `cnl locate --stages P` end to end on SmolLM2: the bytes of one process, the report's pipeline, bad stage counts.
import Foundation
import XCTest

final class StageCommandTests: XCTestCase {
    /// The tiny config as one process and as np 2 × 2 stages, np 4 × 2 stages (two groups) and
    /// np 3 × 3 stages, and np 2 × 2 stages balanced by weights: scores.safetensors
    /// byte-identical, every layer owned by one stage; by weights, each rank holds about half.
    func testStagesGiveTheBytesOfOneProcess() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let single = dir.appendingPathComponent("single").path
        let r0 = try CLI.run(["locate", "--config", "configs/tiny.yaml", "--output", single, "--threads", "1"])
        XCTAssertEqual(r0.status, 0, r0.stderr)
        let reference = try Data(contentsOf: URL(fileURLWithPath: single + "/scores.safetensors"))
        for (np, stages, balance) in [(2, 2, "work"), (4, 2, "work"), (3, 3, "work"), (2, 2, "weights")] {
            let out = dir.appendingPathComponent("np\(np)-stages\(stages)-\(balance)").path
            let r = try CLI.mpirun(np, ["locate", "--config", "configs/tiny.yaml", "--output", out, "--stages", "\(stages)",
                                        "--stage-balance", balance], timeout: 300)
            XCTAssertEqual(r.status, 0, "np \(np) × \(stages) stages: \(r.stderr)")
            guard r.status == 0 else { continue }
            let bytes = try Data(contentsOf: URL(fileURLWithPath: out + "/scores.safetensors"))
            XCTAssertTrue(bytes == reference, "np \(np) × \(stages) stages: scores.safetensors differs from one process")
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
            XCTAssertEqual(report["stages"] as? Int, stages)
            XCTAssertEqual(report["ranks"] as? Int, np)
            let perRank = (report["timings"] as! [String: Any])["per_rank"] as! [[String: Any]]
            XCTAssertEqual(perRank.count, np / stages, "one entry per group")
            XCTAssertEqual(perRank.map { $0["samples"] as! Int }.reduce(0, +), 8, "every sample exactly once")
            let pipeline = (report["placement"] as! [String: Any])["ranks"] as! [[String: Any]]
            XCTAssertEqual(pipeline.count, np)
            for g in 0..<(np / stages) {
                // The group's stages cover layers 0..<30 in order, without gaps or overlaps.
                let layers = pipeline.filter { $0["group"] as? Int == g }.sorted { ($0["stage"] as! Int) < ($1["stage"] as! Int) }.map { $0["layers"] as! [Int] }
                XCTAssertEqual(layers.count, stages)
                XCTAssertEqual(layers.first?[0], 0); XCTAssertEqual(layers.last?[1], 30)
                for (a, b) in zip(layers, layers.dropFirst()) { XCTAssertEqual(a[1], b[0]) }
            }
            // SmolLM2 as fp32: 538 MB, 113 MB of it the tied embedding, which both ends hold.
            let weights = pipeline.map { $0["weight_bytes"] as! Int }
            if balance == "weights" {
                XCTAssertEqual(pipeline.map { $0["layers"] as! [Int] }, [[0, 15], [15, 30]])
                XCTAssertLessThan(Double(weights.max()!), 0.65 * 538_060_032, "\(weights)")
            } else {
                XCTAssertGreaterThan(Double(weights.max()!), 0.7 * 538_060_032, "work balance: the first stage holds most layers: \(weights)")
            }
            for rank in pipeline {
                let idle = rank["idle_fraction"] as! Double
                XCTAssertTrue(idle >= 0 && idle <= 1, "\(rank)")
                XCTAssertGreaterThan(rank["pss_bytes"] as! Int, 0)
            }
            print("locate np \(np) × \(stages) stages: " + r.stdout.split(separator: "\n").filter { $0.hasPrefix("pipeline") || $0.hasPrefix("time") }.joined(separator: " | "))
        }
    }

    /// Each caught before any work starts: one error line, every rank non-zero, no outputs.
    func testImpossibleStageCountsAreRefused() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let args = ["locate", "--config", "configs/tiny.yaml", "--output", out.path]
        assertOneLineFailure(try CLI.mpirun(3, args + ["--stages", "2"], timeout: 300), contains: ["--stages 2 does not divide the 3 ranks"], outputDir: out)
        assertOneLineFailure(try CLI.run(args + ["--stages", "31"]), contains: ["SmolLM2", "more than the model's 30 layers", "at most --stages 30"], outputDir: out)
        assertOneLineFailure(try CLI.run(args + ["--stages", "0"]), contains: ["stages", "between 1 and 4096"], outputDir: out)

        // A one-layer model (random weights that transformers makes, SmolLM2's tokenizer).
        let model = dir.appendingPathComponent("one-layer")
        let script = """
        import sys, shutil, torch
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.manual_seed(0)
        c = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                        vocab_size=49152, max_position_embeddings=512, tie_word_embeddings=True)
        LlamaForCausalLM(c).save_pretrained(sys.argv[1], safe_serialization=True)
        shutil.copy(sys.argv[2], sys.argv[1] + "/tokenizer.json")
        """
        let py = try CLI.python(["-c", script, model.path, try CLI.asset("oracle/tokenizers/smollm2/tokenizer.json")])
        XCTAssertEqual(py.status, 0, py.stderr)
        assertOneLineFailure(try CLI.mpirun(2, args + ["--model", model.path, "--stages", "2"], timeout: 300),
                             contains: ["one-layer", "at least 2 layers", "without --stages"], outputDir: out)
    }
}
