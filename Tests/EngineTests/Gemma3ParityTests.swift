// Gemma 3 forward passes against HF transformers (scripts/oracle/fixtures_gemma3.py): the real
// Gemma-3-270M GGUF (Q4_K_M) on 20 GSM8K questions, and a random-weight gemma3 HF directory
// whose sliding window is shorter than its input.
import Engine
import Foundation
import XCTest

final class Gemma3ParityTests: XCTestCase {
    /// Last-position logits within 1e-3 × max |logit| of HF, identical 32-token greedy continuations.
    func testRealGemma3MatchesTransformers() throws {
        let ref = try SafetensorsFile(path: try Fixtures.require("oracle/gemma3/real/reference.safetensors"))
        let loaded = try ModelRegistry.load(path: try Fixtures.require("models/gemma-3-270m-q4_k_m.gguf"))
        XCTAssertEqual(loaded.model.modelType, "gemma3_text")
        let prompts = try ref.readIntegers("prompt_tokens")
        let width = ref.tensors["prompt_tokens"]!.shape[1]
        let last = try ref.readArray("last_logits")
        let greedy = try ref.readIntegers("greedy_tokens")
        let v = loaded.model.dimensions.vocabulary
        XCTAssertEqual(v, 262_144)
        var worst: Float = 0
        var identical = 0
        for i in 0..<20 {
            let prompt = Array(prompts[(i * width)..<((i + 1) * width)].filter { $0 >= 0 })
            let logits = try loaded.model.forward(prompt, cache: loaded.model.makeCache(capacity: prompt.count), logits: .last)
            let expected = Array(last[(i * v)..<((i + 1) * v)])
            let maxRef = expected.map(abs).max()!
            let maxDiff = zip(logits, expected).map { abs($0 - $1) }.max()!
            worst = max(worst, maxDiff / maxRef)
            XCTAssertLessThanOrEqual(maxDiff, 1e-3 * maxRef, "prompt \(i)")
            let gen = try loaded.model.generateGreedy(prompt: prompt, maxNewTokens: 32)
            let want = Array(greedy[(i * 32)..<((i + 1) * 32)])
            if gen == want { identical += 1 }
            XCTAssertEqual(gen, want, "greedy continuation of prompt \(i)")
        }
        print("Gemma 3 parity: worst max|Δ|/max|logit| = \(worst); identical greedy continuations \(identical)/20")
    }

    /// All-position logits of a random gemma3 (HF directory, window 8 on 64 tokens, two rotary
    /// bases, q/k norms, sandwich norms) within 1e-4 × max |logit|; once in one pass, once token
    /// by token through the KV cache (the decoding path sees the window too).
    func testRandomGemma3SlidingWindowMatchesTransformers() throws {
        let dir = URL(fileURLWithPath: try Fixtures.require("oracle/gemma3/random/config.json")).deletingLastPathComponent().path
        let model = try ModelRegistry.load(path: dir).model
        let ref = try SafetensorsFile(path: try Fixtures.require("oracle/gemma3/random/reference.safetensors"))
        let tokens = try ref.readIntegers("tokens")
        let want = try ref.readArray("logits")
        let (T, V) = (ref.tensors["tokens"]!.shape[1], model.dimensions.vocabulary)
        XCTAssertEqual(T, 64)
        var worstPass: Float = 0, worstSteps: Float = 0
        for b in 0..<2 {
            let seq = Array(tokens[(b * T)..<((b + 1) * T)])
            let expected = Array(want[(b * T * V)..<((b + 1) * T * V)])
            let maxRef = expected.map(abs).max()!
            let pass = try model.forward(seq, cache: model.makeCache(capacity: T), logits: .all)
            let d1 = zip(pass, expected).map { abs($0 - $1) }.max()!
            worstPass = max(worstPass, d1 / maxRef)
            XCTAssertLessThanOrEqual(d1, 1e-4 * maxRef, "sequence \(b), one pass")
            let cache = model.makeCache(capacity: T)
            var steps: [Float] = []
            for t in seq { steps += try model.forward([t], cache: cache, logits: .last) }
            let d2 = zip(steps, expected).map { abs($0 - $1) }.max()!
            worstSteps = max(worstSteps, d2 / maxRef)
            XCTAssertLessThanOrEqual(d2, 1e-4 * maxRef, "sequence \(b), token by token")
        }
        print("Gemma 3 random (window 8, 64 tokens): max|Δ|/max|logit| one pass \(worstPass), token by token \(worstSteps)")
    }

    /// A multimodal Gemma 3 directory (model_type "gemma3") is refused with one line that says
    /// what to load instead; a soft-capped config (Gemma 2's) names the key.
    func testUnsupportedGemmaConfigsNameTheKey() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-gemma3-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("config.json")
        try Data(#"{"model_type": "gemma3", "text_config": {}}"#.utf8).write(to: config)
        // An empty but valid safetensors file: an 8-byte header length, then the header "{}".
        try Data([2, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8)).write(to: dir.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try ModelRegistry.load(path: dir.path)) { e in
            let m = e.localizedDescription
            XCTAssertTrue(m.contains("model_type") && m.contains("gemma3_text"), m)
        }
        try Data(#"{"model_type": "gemma3_text", "num_hidden_layers": 2, "final_logit_softcapping": 30.0}"#.utf8).write(to: config)
        XCTAssertThrowsError(try ModelRegistry.load(path: dir.path)) { e in
            let m = e.localizedDescription
            XCTAssertTrue(m.contains("final_logit_softcapping"), m)
        }
    }
}
