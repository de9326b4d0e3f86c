// Forward passes against HF transformers: random-weight gpt2/gptj/llama and the real SmolLM2.
import Engine
import Foundation
import XCTest

final class ForwardParityTests: XCTestCase {
    /// All-position logits of small random models that transformers itself created and saved
    /// (F32 and BF16 safetensors): relative error ≤ 1e-4 of max |logit|.
    func testRandomModelsMatchTransformers() throws {
        for name in ["gpt2", "gptj", "llama", "llama3rope"] {
            for dtype in ["f32", "bf16"] {
                let dir = try Fixtures.require("oracle/models/\(name)-\(dtype)/config.json")
                let modelDir = URL(fileURLWithPath: dir).deletingLastPathComponent().path
                let loaded = try ModelRegistry.load(path: modelDir)
                let ref = try SafetensorsFile(path: modelDir + "/reference.safetensors")
                let tokens = try ref.readIntegers("tokens")
                let expected = try ref.readArray("logits")
                let shape = ref.tensors["tokens"]!.shape
                let (b, t) = (shape[0], shape[1])
                let v = loaded.model.dimensions.vocabulary
                var maxDiff: Float = 0, maxRef: Float = 0
                for i in 0..<b {
                    let cache = loaded.model.makeCache()
                    // Prefill the first half in one call, then one token at a time: both the
                    // batched and the cached single-token paths are compared.
                    let seq = Array(tokens[(i * t)..<((i + 1) * t)])
                    let half = t / 2
                    var got = try loaded.model.forward(Array(seq[0..<half]), cache: cache, logits: .all)
                    for tok in seq[half...] { got += try loaded.model.forward([tok], cache: cache, logits: .all) }
                    for k in 0..<(t * v) {
                        maxDiff = max(maxDiff, abs(got[k] - expected[i * t * v + k]))
                        maxRef = max(maxRef, abs(expected[i * t * v + k]))
                    }
                }
                print("forward parity \(name)-\(dtype): max |Δlogit| = \(maxDiff), max |logit| = \(maxRef), relative \(maxDiff / maxRef)")
                XCTAssertLessThanOrEqual(maxDiff, 1e-4 * maxRef, "\(name)-\(dtype)")
            }
        }
    }

    /// The real SmolLM2-135M-Instruct GGUF (Q4_1): last-position logits of 20 GSM8K questions
    /// within 1e-3 × max |logit| of HF, and identical 32-token greedy continuations.
    func testSmolLM2MatchesTransformers() throws {
        let refPath = try Fixtures.require("oracle/models/smollm2/reference.safetensors")
        let loaded = try ModelRegistry.load(path: try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        let ref = try SafetensorsFile(path: refPath)
        let prompts = try ref.readIntegers("prompt_tokens")
        let width = ref.tensors["prompt_tokens"]!.shape[1]
        let last = try ref.readArray("last_logits")
        let greedy = try ref.readIntegers("greedy_tokens")
        let v = loaded.model.dimensions.vocabulary
        var worst: Float = 0
        var identical = 0
        for i in 0..<20 {
            let prompt = prompts[(i * width)..<((i + 1) * width)].filter { $0 >= 0 }
            let cache = loaded.model.makeCache()
            let logits = try loaded.model.forward(Array(prompt), cache: cache, logits: .last)
            let expected = Array(last[(i * v)..<((i + 1) * v)])
            let maxRef = expected.map(abs).max()!
            let maxDiff = zip(logits, expected).map { abs($0 - $1) }.max()!
            worst = max(worst, maxDiff / maxRef)
            XCTAssertLessThanOrEqual(maxDiff, 1e-3 * maxRef, "prompt \(i)")
            let gen = try loaded.model.generateGreedy(prompt: Array(prompt), maxNewTokens: 32)
            let want = Array(greedy[(i * 32)..<((i + 1) * 32)])
            if gen == want { identical += 1 }
            XCTAssertEqual(gen, want, "greedy continuation of prompt \(i)")
        }
        print("SmolLM2 parity: worst max|Δ|/max|logit| = \(worst); identical greedy continuations \(identical)/20")
    }
}
