// Eq. 7 scores of attributeSample against a float64 PyTorch implementation (HF modules, hooks,
// autograd) and its finite differences: random gpt2/gptj/llama and the real SmolLM2 GGUF.
import Engine
import Foundation
import XCTest

final class AttributionParityTests: XCTestCase {
    struct Reference {
        let prompt: [Int], answer: [Int]
        let file: SafetensorsFile
        func doubles(_ name: String) throws -> [Double] {
            // The oracle writes float64; read its raw values through the Float path's F64 support.
            try file.readArray(name).map(Double.init)
        }
    }

    /// `reference`, `modelPath`: where the oracle and the model are (default: the attribution
    /// oracle's `name` and its random model, or the SmolLM2 GGUF).
    func load(_ name: String, reference: String? = nil, modelPath: String? = nil) throws -> (TransformerModel, Reference) {
        let ref = try SafetensorsFile(path: try Fixtures.require(reference ?? "oracle/attribution/\(name)/reference.safetensors"))
        let modelPath = try modelPath.map { try Fixtures.require($0) } ?? (name.hasPrefix("smollm2")
            ? try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf")
            : URL(fileURLWithPath: try Fixtures.require("oracle/models/\(name)/config.json")).deletingLastPathComponent().path)
        let model = try ModelRegistry.load(path: modelPath).model
        return (model, Reference(prompt: try ref.readIntegers("prompt"), answer: try ref.readIntegers("answer"), file: ref))
    }

    /// The σ mask of SPEC's Eq. 8 with the population standard deviation, as the indices set.
    func mask(_ s: [Double], sigma: Double = 6) -> Set<Int> {
        let mean = s.reduce(0, +) / Double(s.count)
        let sd = (s.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(s.count)).squareRoot()
        return Set(s.indices.filter { abs(s[$0] - mean) > sigma * sd })
    }

    func compare(_ name: String, normalization: AttributionOptions.Normalization = .paper, key: String = "scores_paper",
                 reference: String? = nil, modelPath: String? = nil) throws {
        let (model, ref) = try load(name, reference: reference, modelPath: modelPath)
        var options = AttributionOptions()
        options.normalization = normalization
        let attributor = try SampleAttributor(model: model, options: options)
        var grads: [String: Float] = [:]
        let points = try ref.file.readIntegers("fd_points")
        let wanted = Set(stride(from: 0, to: points.count, by: 4).map { "\(points[$0]),\(points[$0 + 1]),\(points[$0 + 2])" })
        attributor.onRowGradient = { m, l, n, g in
            let k = "\(m),\(l),\(n)"
            if wanted.contains(k) { for j in 0..<g.count { grads["\(k),\(j)"] = g[j] } }
        }
        let start = Date()
        let got = try attributor.attribute(prompt: ref.prompt, answer: ref.answer)
        let seconds = Date().timeIntervalSince(start)
        let want = try ref.doubles(key)
        XCTAssertEqual(got.scores.count, want.count)
        var num = 0.0, den = 0.0, maxDiff = 0.0
        for (a, b) in zip(got.scores, want) { num += (a - b) * (a - b); den += b * b; maxDiff = max(maxDiff, abs(a - b)) }
        let maxRef = want.map(abs).max()!
        let relL2 = (num / den).squareRoot()
        let (ours, theirs) = (mask(got.scores), mask(want))
        print("attribution \(name) [\(normalization)]: Y=\(got.answerTokens) rows=\(got.rows) rel L2 \(relL2), max|Δ|/max|score| \(maxDiff / maxRef), σ=6 mask \(ours.count) vs \(theirs.count) neurons, \(String(format: "%.2f", seconds)) s")
        XCTAssertLessThanOrEqual(relL2, 2e-4, name)
        XCTAssertLessThanOrEqual(maxDiff, 1e-3 * maxRef, name)
        XCTAssertEqual(ours, theirs, "σ = 6 masks of \(name)")

        // P_m(1) and P_m(0) (layer l's ω zeroed) per (m, l).
        let p1 = try ref.doubles("p_clean"), p0 = try ref.doubles("p_zero")
        for i in 0..<p1.count {
            XCTAssertEqual(got.probabilityClean[i], p1[i], accuracy: 1e-5 + 1e-4 * p1[i])
            XCTAssertEqual(got.probabilityZero[i], p0[i], accuracy: 1e-5 + 1e-4 * p0[i])
        }

        // ∂P/∂ω at a few (m, l, j, α) against float64 central differences (Richardson).
        let fd = try ref.doubles("fd_gradient")
        var worst = 0.0
        for i in 0..<(points.count / 4) {
            let k = "\(points[4 * i]),\(points[4 * i + 1]),\(points[4 * i + 2]),\(points[4 * i + 3])"
            let g = try XCTUnwrap(grads[k], "no gradient recorded for \(k)")
            let rel = abs(Double(g) - fd[i]) / abs(fd[i])
            worst = max(worst, rel)
            XCTAssertLessThanOrEqual(rel, 1e-3, "dP/dω at (m, l, n, j) = (\(k)): \(g) vs finite difference \(fd[i])")
        }
        print("attribution \(name): dP/dω vs float64 finite differences at \(points.count / 4) points, worst relative error \(worst)")
    }

    func testGPT2MatchesFloat64PyTorch() throws { try compare("gpt2-f32") }
    func testGPTJMatchesFloat64PyTorch() throws { try compare("gptj-f32") }
    func testLlamaMatchesFloat64PyTorch() throws { try compare("llama-f32") }
    func testNormalizationsMatchFloat64PyTorch() throws {
        try compare("llama-f32", normalization: .points, key: "scores_points")
        try compare("gptj-f32", normalization: .trapezoid, key: "scores_trapezoid")
    }
    /// Gemma 3: a random model whose sliding window (8) is shorter than its 14-token sequence,
    /// and the real Gemma-3-270M on the two GSM8K samples of the SmolLM2 check.
    func testGemma3MatchesFloat64PyTorch() throws {
        try compare("gemma3-random", reference: "oracle/gemma3/attribution/random/reference.safetensors", modelPath: "oracle/gemma3/random")
        for i in 0..<2 {
            try compare("gemma3-\(i)", reference: "oracle/gemma3/attribution/real-\(i)/reference.safetensors",
                        modelPath: "models/gemma-3-270m-q4_k_m.gguf")
        }
    }

    func testSmolLM2MatchesFloat64PyTorch() throws {
        try compare("smollm2-0")
        try compare("smollm2-1")
    }
}
