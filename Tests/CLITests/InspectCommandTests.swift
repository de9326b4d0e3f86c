// `cnl inspect` on the real SmolLM2 GGUF against HF's own numbers, its load memory, bad input.
import Foundation
import XCTest

final class InspectCommandTests: XCTestCase {
    func testInspectMatchesTransformersAndStaysWithinLoadBudget() throws {
        let model = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try CLI.asset("oracle/models/smollm2/meta.json")))) as! [String: Any]
        let r = try CLI.run(["inspect", model, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(got["architecture"] as? String, meta["model_type"] as? String)
        for key in ["hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "vocab_size"] {
            XCTAssertEqual(got[key] as? Int, meta[key] as? Int, key)
        }
        XCTAssertEqual(got["layers"] as? Int, meta["num_hidden_layers"] as? Int)
        XCTAssertEqual(got["parameters"] as? Int, meta["num_parameters"] as? Int)
        XCTAssertEqual(got["tied_embeddings"] as? Bool, meta["tie_word_embeddings"] as? Bool)
        // The budget: loading peaks at no more than 1.5× the F32 weight size.
        let peak = try XCTUnwrap(got["peak_resident_bytes"] as? Int)
        let fp32 = try XCTUnwrap(got["fp32_weight_bytes"] as? Int)
        print("SmolLM2 load: peak resident \(peak) bytes = \(Double(peak) / Double(fp32))× the F32 weights (\(fp32) bytes)")
        XCTAssertLessThanOrEqual(Double(peak), 1.5 * Double(fp32))
    }

    func testMissingModelIsAOneLineErrorAndNonZeroExit() throws {
        let r = try CLI.run(["inspect", "/nonexistent/model.gguf"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/nonexistent/model.gguf"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty)
    }

    func testTruncatedGGUFNamesTheFile() throws {
        let model = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cut = dir.appendingPathComponent("truncated.gguf")
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: model))
        try h.readData(ofLength: 5_000_000).write(to: cut)
        let r = try CLI.run(["inspect", cut.path])
        XCTAssertEqual(r.status, 1)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains(cut.path) && r.stderr.contains("truncated"), r.stderr)
    }

    func testAbsurdThreadsIsRejected() throws {
        let model = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let r = try CLI.run(["inspect", model, "--threads", "0"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--threads"), r.stderr)
    }
}
