// `cnl bench attribution`: seconds per sample, FLOP rate against sgemm peak, memory per row budget.
import COpenBLAS
import Foundation

public struct AttributionSampleTiming: Codable, Sendable {
    public var index: Int
    public var answerKind: String
    public var promptTokens: Int
    public var answerTokens: Int
    public var rows: Int
    public var seconds: Double
    public var gflop: Double
    public var gflopPerSecond: Double
    public var peakChunkBytes: Int
    public var promptIDs: [Int]
    public var answerIDs: [Int]

    enum CodingKeys: String, CodingKey {
        case index, answerKind = "answer_kind", promptTokens = "prompt_tokens", answerTokens = "answer_tokens", rows, seconds
        case gflop, gflopPerSecond = "gflop_per_second", peakChunkBytes = "peak_chunk_bytes"
        case promptIDs = "prompt_ids", answerIDs = "answer_ids"
    }
}

public struct RowBudgetMemory: Codable, Sendable {
    public var rowBudget: Int
    public var peakChunkBytes: Int
    public var seconds: Double
    enum CodingKeys: String, CodingKey { case rowBudget = "row_budget", peakChunkBytes = "peak_chunk_bytes", seconds }
}

public struct AttributionBenchmarkResult: Codable, Sendable {
    public var threads: Int
    public var samples: [AttributionSampleTiming]
    /// Single-thread sgemm GFLOP/s at the shapes the rows use, measured in the same run.
    public var sgemmPeakGFLOPs: [String: Double]
    public var memory: [RowBudgetMemory]

    enum CodingKeys: String, CodingKey { case threads, samples, sgemmPeakGFLOPs = "sgemm_gflop_per_second", memory }
}

public enum AttributionBenchmark {
    public static func run(model: TransformerModel, tokenizer: Tokenizer, gsm8k: String, finals: Int, fulls: Int,
                           threads: Int, options: AttributionOptions, budgets: [Int], log: (String) -> Void) throws -> AttributionBenchmarkResult {
        BLASThreads.set(threads)
        // The question with an "Answer:" cue; the first `finals` rows answered with the final
        // answer (after ####), the next `fulls` with the whole worked answer.
        let n = finals + fulls
        let finalTexts = try DatasetLoader.texts(DatasetSpec(path: gsm8k, prompt: "{question}\nAnswer:", answer: " {answer_final}", limit: n))
        let fullTexts = try DatasetLoader.texts(DatasetSpec(path: gsm8k, prompt: "{question}\nAnswer:", answer: " {answer}", limit: n))
        var timings: [AttributionSampleTiming] = []
        let attributor = try SampleAttributor(model: model, options: options)
        for i in 0..<min(n, finalTexts.count) {
            let full = i >= finals
            let text = full ? fullTexts[i] : finalTexts[i]
            let prompt = tokenizer.encode(text.prompt), answer = tokenizer.encode(text.answer, addSpecialTokens: false)
            let start = Date()
            let r = try attributor.attribute(prompt: prompt, answer: answer)
            let s = Date().timeIntervalSince(start)
            let t = AttributionSampleTiming(index: i, answerKind: full ? "full" : "final", promptTokens: prompt.count, answerTokens: r.answerTokens,
                                            rows: r.rows, seconds: s, gflop: r.flops / 1e9, gflopPerSecond: r.flops / 1e9 / s,
                                            peakChunkBytes: r.peakChunkBytes, promptIDs: prompt, answerIDs: answer)
            log(String(format: "sample %d (%@ answer): X=%d Y=%d rows=%d  %.2f s  %.1f GFLOP  %.1f GFLOP/s", i, t.answerKind, t.promptTokens,
                       t.answerTokens, t.rows, s, t.gflop, t.gflopPerSecond))
            timings.append(t)
        }
        // The sgemm rate at the rows' shapes: a layer batch (rows × D) · (D × J) and the LM head.
        let d = model.dimensions
        let typicalRows = max(1, min(options.rowBudget, d.layers * (options.steps + 1)) / 2)
        var peaks: [String: Double] = [:]
        for (name, m, n, k) in [("ffn \(typicalRows)x\(d.width)x\(d.ffnWidth)", typicalRows, d.ffnWidth, d.width),
                                ("head \(typicalRows)x\(d.width)x\(d.vocabulary)", typicalRows, d.vocabulary, d.width)] {
            peaks[name] = sgemmRate(m: m, n: n, k: k)
        }
        // Memory against the row budget, on the first sample.
        var memory: [RowBudgetMemory] = []
        if let first = timings.first {
            for b in budgets {
                var o = options
                o.rowBudget = b
                let start = Date()
                let r = try SampleAttributor(model: model, options: o).attribute(prompt: first.promptIDs, answer: first.answerIDs)
                memory.append(RowBudgetMemory(rowBudget: b, peakChunkBytes: r.peakChunkBytes, seconds: Date().timeIntervalSince(start)))
                log(String(format: "row budget %5d: peak chunk memory %.1f MB, %.2f s", b, Double(r.peakChunkBytes) / 1e6, memory.last!.seconds))
            }
        }
        return AttributionBenchmarkResult(threads: threads, samples: timings, sgemmPeakGFLOPs: peaks, memory: memory)
    }

    /// GFLOP/s of C[m×n] = A[m×k]·B[n×k]ᵀ (the orientation Linear uses), best of 5 after a warm-up.
    public static func sgemmRate(m: Int, n: Int, k: Int) -> Double {
        var a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.01, count: n * k), c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for rep in 0..<6 {
            let t = Date()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, &a, Int32(k), &b, Int32(k), 0, &c, Int32(n))
            if rep > 0 { best = min(best, Date().timeIntervalSince(t)) }
        }
        return 2.0 * Double(m * n * k) / best / 1e9
    }
}
