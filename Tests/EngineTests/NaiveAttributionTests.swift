// The fast path (cached prefix, batched single-token rows) against the naive full-sequence path.
import Engine
import Foundation
import XCTest

final class NaiveAttributionTests: XCTestCase {
    func sample(_ name: String) throws -> (TransformerModel, [Int], [Int]) {
        let ref = try SafetensorsFile(path: try Fixtures.require("oracle/attribution/\(name)/reference.safetensors"))
        let modelPath = name.hasPrefix("smollm2")
            ? try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf")
            : URL(fileURLWithPath: try Fixtures.require("oracle/models/\(name)/config.json")).deletingLastPathComponent().path
        return (try ModelRegistry.load(path: modelPath).model, try ref.readIntegers("prompt"), try ref.readIntegers("answer"))
    }

    /// Fast-path Σ_n (1/S)·∂P_m/∂ω_l per (m, l), and its scores.
    func fast(_ model: TransformerModel, _ prompt: [Int], _ answer: [Int]) throws -> ([String: [Double]], [Double]) {
        let attributor = try SampleAttributor(model: model)
        var integrals: [String: [Double]] = [:]
        attributor.onRowGradient = { m, l, _, g in
            var v = integrals["\(m),\(l)"] ?? [Double](repeating: 0, count: g.count)
            for j in 0..<g.count { v[j] += Double(g[j]) / 19 }
            integrals["\(m),\(l)"] = v
        }
        let r = try attributor.attribute(prompt: prompt, answer: answer)
        return (integrals, r.scores)
    }

    /// Random gpt2/gptj/llama: the whole [L, J] score, every (m, l), recomputed naively.
    func testRandomModelsFastEqualsNaive() throws {
        for name in ["gpt2-f32", "gptj-f32", "llama-f32"] {
            let (model, prompt, answer) = try sample(name)
            let (L, J, Y) = (model.dimensions.layers, model.dimensions.ffnWidth, answer.count)
            let (_, fastScores) = try fast(model, prompt, answer)
            var naive = [Double](repeating: 0, count: L * J)
            for m in 0..<Y { for l in 0..<L {
                let (attr, _, _) = NaiveAttribution.attribution(model: model, prompt: prompt, answer: answer, m: m, layer: l)
                for j in 0..<J { naive[l * J + j] += attr[j] / Double(Y) }
            } }
            let maxScore = naive.map(abs).max()!
            let maxDiff = zip(naive, fastScores).map { abs($0 - $1) }.max()!
            print("naive vs fast \(name): max|Δ| / max|score| = \(maxDiff / maxScore)")
            XCTAssertLessThanOrEqual(maxDiff, 1e-4 * maxScore, name)
        }
    }

    /// SmolLM2, 2 GSM8K samples: on the first, (m, l) pairs at the top, middle and bottom of the
    /// model; on the second the top only. The naive path costs a full-sequence forward and
    /// backward per point (4–9 s each here), so the suite keeps four.
    func testSmolLM2FastEqualsNaive() throws {
        for name in ["smollm2-0", "smollm2-1"] {
            let (model, prompt, answer) = try sample(name)
            let (integrals, _) = try fast(model, prompt, answer)
            let L = model.dimensions.layers
            let all = [(0, L - 1), (answer.count - 1, L / 2), (answer.count - 1, 0)]
            for (m, l) in name == "smollm2-0" ? all : [all[0]] {
                let start = Date()
                // ω̄ from the naive path's own clean point (n = S), applied to the fast integral.
                let (attr, _, omegaBar) = NaiveAttribution.attribution(model: model, prompt: prompt, answer: answer, m: m, layer: l)
                let fastAttr = zip(omegaBar, integrals["\(m),\(l)"]!).map { Double($0) * $1 }
                let maxAttr = attr.map(abs).max()!
                let maxDiff = zip(attr, fastAttr).map { abs($0 - $1) }.max()!
                print("naive vs fast \(name) (m=\(m), l=\(l)): max|Δ| / max|attr| = \(maxDiff / maxAttr) (\(String(format: "%.1f", Date().timeIntervalSince(start))) s naive)")
                XCTAssertLessThanOrEqual(maxDiff, 1e-4 * maxAttr, "\(name) m=\(m) l=\(l)")
            }
        }
    }
}
