// Erased models against HF transformers with the same gate_proj / c_fc / fc_in rows zeroed.
import Engine
import Foundation
import XCTest

final class ErasureParityTests: XCTestCase {
    /// scripts/oracle/fixtures_evaluate.py zeroes 15 % of the neurons of the random gpt2, gptj and
    /// llama models (and 639 of SmolLM2's) in HF and saves all-position logits with and without.
    /// cnl's erase must give HF's erased logits to 1e-4 of max |logit|, change them as much as HF
    /// does, and `restore` must give back the base model's logits.
    func testErasedLogitsMatchTransformers() throws {
        for name in ["gpt2", "gptj", "llama", "smollm2"] {
            let ref = try SafetensorsFile(path: try Fixtures.require("oracle/evaluate/erase/\(name).safetensors"))
            let modelPath = name == "smollm2" ? try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf")
                                              : (try Fixtures.require("oracle/models/\(name)-f32/config.json") as NSString).deletingLastPathComponent
            let model = try ModelRegistry.load(path: modelPath).model
            let d = model.dimensions
            let pairs = try ref.readIntegers("neurons")
            let neurons = stride(from: 0, to: pairs.count, by: 2).map { pairs[$0] * d.ffnWidth + pairs[$0 + 1] }
            let tokens = try ref.readIntegers("tokens")
            let (erasedRef, baseRef) = (try ref.readArray("logits"), try ref.readArray("logits_base"))
            func logits() throws -> [Float] { try model.forward(tokens, cache: model.makeCache(capacity: tokens.count), logits: .all) }
            func relative(_ a: [Float], _ b: [Float]) -> Float {
                zip(a, b).map { abs($0 - $1) }.max()! / b.map(abs).max()!
            }
            let erasure = try model.erase(neurons)
            XCTAssertEqual(erasure.neurons.count, Set(neurons).count)
            let erased = try logits()
            model.restore(erasure)
            let restored = try logits()
            let (eErr, bErr, effect) = (relative(erased, erasedRef), relative(restored, baseRef), relative(erasedRef, baseRef))
            print("erase parity \(name): \(neurons.count) neurons erased; erased vs HF \(eErr), restored vs HF base \(bErr), HF's own erase effect \(effect)")
            XCTAssertLessThanOrEqual(eErr, 1e-4, name)
            XCTAssertLessThanOrEqual(bErr, 1e-4, name)
            XCTAssertGreaterThan(effect, 100 * max(eErr, 1e-6), "\(name): the erase must change the logits far beyond the parity error")
        }
    }

    func testNeuronOutsideTheModelIsRefused() throws {
        let model = try ModelRegistry.load(path: (try Fixtures.require("oracle/models/llama-f32/config.json") as NSString).deletingLastPathComponent).model
        XCTAssertThrowsError(try model.erase([0, model.dimensions.neuronCount])) { e in
            XCTAssertTrue(e.localizedDescription.contains("outside the model's"), e.localizedDescription)
        }
    }
}
