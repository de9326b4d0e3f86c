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

    /// Several prompts in one batched pass (what `cnl evaluate` runs): prompts of different
    /// lengths from the random models' sequences, their last logits and then the rest of each
    /// sequence teacher-forced in one more batched pass, against HF's all-position logits.
    func testBatchedPromptsAndContinuationsMatchTransformers() throws {
        for name in ["gpt2", "gptj", "llama"] {
            let dir = try Fixtures.require("oracle/models/\(name)-f32/config.json")
            let modelDir = URL(fileURLWithPath: dir).deletingLastPathComponent().path
            let model = try ModelRegistry.load(path: modelDir).model
            let ref = try SafetensorsFile(path: modelDir + "/reference.safetensors")
            let tokens = try ref.readIntegers("tokens"), expected = try ref.readArray("logits")
            let t = ref.tensors["tokens"]!.shape[1], v = model.dimensions.vocabulary
            // (sequence, prompt length): four segments of different lengths, two per sequence.
            let cuts = [(0, 12), (1, 20), (0, 7), (1, 31)]
            let prompts = cuts.map { Array(tokens[($0.0 * t)..<($0.0 * t + $0.1)]) }
            let rests = cuts.map { Array(tokens[($0.0 * t + $0.1)..<(($0.0 + 1) * t)]) }
            let prefilled = try model.prefill(prompts, continuation: rests.map(\.count))
            let scored = try model.continuationLogProbabilities(rests, after: prefilled)
            var maxRef: Float = 0, worstLogit: Float = 0, worstLogP = 0.0
            for (k, (seq, n)) in cuts.enumerated() {
                let row = { (pos: Int) in Array(expected[((seq * t + pos) * v)..<((seq * t + pos + 1) * v)]) }
                let want = row(n - 1)
                maxRef = max(maxRef, want.map(abs).max()!)
                worstLogit = max(worstLogit, zip(prefilled[k].lastLogits, want).map { abs($0 - $1) }.max()!)
                XCTAssertEqual(scored[k].count, rests[k].count)
                for (m, tok) in rests[k].enumerated() {
                    let z = row(n - 1 + m).map(Double.init), top = z.max()!
                    let logP = z[tok] - top - log(z.map { exp($0 - top) }.reduce(0, +))
                    worstLogP = max(worstLogP, abs(scored[k][m] - logP))
                }
            }
            print("batched prompts \(name): max |Δlogit| = \(worstLogit), max |Δ log P| = \(worstLogP), max |logit| = \(maxRef)")
            XCTAssertLessThanOrEqual(worstLogit, 1e-4 * maxRef, name)
            XCTAssertLessThanOrEqual(worstLogP, 2e-4 * Double(maxRef), name)
        }
    }

    /// The 20 GSM8K prompts of the SmolLM2 check prefilled in `cnl evaluate`'s groups of 8 and
    /// decoded in lockstep: the 32 greedy tokens of each equal HF's.
    func testSmolLM2LockstepGreedyMatchesTransformers() throws {
        let refPath = try Fixtures.require("oracle/models/smollm2/reference.safetensors")
        let model = try ModelRegistry.load(path: try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf")).model
        let ref = try SafetensorsFile(path: refPath)
        let prompts = try ref.readIntegers("prompt_tokens"), greedy = try ref.readIntegers("greedy_tokens")
        let width = ref.tensors["prompt_tokens"]!.shape[1]
        var identical = 0
        for group in stride(from: 0, to: 20, by: 8).map({ Array($0..<min($0 + 8, 20)) }) {
            let batch = group.map { i in Array(prompts[(i * width)..<((i + 1) * width)].filter { $0 >= 0 }) }
            let prefilled = try model.prefill(batch, continuation: batch.map { _ in 32 })
            let generated = try model.greedyContinuations(after: prefilled, maxNewTokens: 32) { _ in false }
            for (k, i) in group.enumerated() {
                let want = Array(greedy[(i * 32)..<((i + 1) * 32)])
                if generated[k] == want { identical += 1 }
                XCTAssertEqual(generated[k], want, "prompt \(i)")
            }
        }
        print("SmolLM2 lockstep greedy: \(identical)/20 identical to HF")
    }
}
