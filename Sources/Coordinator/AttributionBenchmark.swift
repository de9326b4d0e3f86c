// `cnl bench attribution`: time the Eq. 7 attribution of real samples, count the minimal FLOPs, measure sgemm and memory.
import COpenBLAS
import Engine
import Foundation

public struct AttributionSampleTiming: Codable, Sendable {
    public var index: Int
    public var promptTokens: Int
    public var answerTokens: Int
    public var rows: Int
    /// FLOPs the engine counted for its rows (forward and backward products and attention).
    public var gflop: Double
    /// The minimal FLOPs of SPEC's shortcut, counted here from the model's shapes alone: the
    /// clean pass (every product, causal attention, the head at the Y answer positions), each
    /// row's forward from its layer's FFN output to the logits, and a backward of the same
    /// products (input gradients only).
    public var minimalGFLOP: Double
    public var peakChunkBytes: Int
    public var promptIDs: [Int]
    public var answerIDs: [Int]
    /// Σ_j attr_m(l, j) and P_m(1), P_m(0), [Y, L]: completeness.
    public var attributionSums: [Double]
    public var probabilityClean: [Double]
    public var probabilityZero: [Double?]

    enum CodingKeys: String, CodingKey {
        case index, promptTokens = "prompt_tokens", answerTokens = "answer_tokens", rows, gflop, minimalGFLOP = "minimal_gflop"
        case peakChunkBytes = "peak_chunk_bytes", promptIDs = "prompt_ids", answerIDs = "answer_ids"
        case attributionSums = "attribution_sums", probabilityClean = "p_clean", probabilityZero = "p_zero"
    }
}

public struct RowBudgetMemory: Codable, Sendable {
    public var rowBudget: Int
    /// One worker's buffers after the first sample (tapes, logits slab, gradients).
    public var peakChunkBytes: Int
    public var seconds: Double
    enum CodingKeys: String, CodingKey { case rowBudget = "row_budget", peakChunkBytes = "peak_chunk_bytes", seconds }
}

public struct AttributionBenchmarkResult: Codable, Sendable {
    public var threads: Int
    /// rows: `threads` workers over row batches, one BLAS thread each; blas: one worker, `threads` BLAS threads.
    public var threading: String
    public var normalization: String
    public var pointsPerLayer: Int
    public var samples: [AttributionSampleTiming]
    /// Wall time of the whole stream (clean passes and rows; the model is loaded before).
    public var seconds: Double
    public var gflopPerSecond: Double
    public var minimalGFLOPPerSecond: Double
    /// sgemm GFLOP/s measured in the same run: 2048³ at 1 and at `threads` BLAS threads, and
    /// the rows' shapes at one thread.
    public var sgemmGFLOPs: [String: Double]
    public var memory: [RowBudgetMemory]

    enum CodingKeys: String, CodingKey {
        case threads, threading, normalization, pointsPerLayer = "points_per_layer", samples, seconds
        case gflopPerSecond = "gflop_per_second", minimalGFLOPPerSecond = "minimal_gflop_per_second"
        case sgemmGFLOPs = "sgemm_gflop_per_second", memory
    }
}

public enum AttributionBenchmark {
    public enum Threading: String, Sendable, CaseIterable { case rows, blas }

    public static func run(model: TransformerModel, tokenizer: Tokenizer, dataset: DatasetSpec, threads: Int, threading: Threading,
                           options: AttributionOptions, budgets: [Int], scoresOut: String?, log: (String) -> Void) throws -> AttributionBenchmarkResult {
        let texts = try DatasetLoader.texts(dataset)
        let samples = try DatasetLoader.tokenize(texts, path: dataset.path, tokenizer: tokenizer, contextLength: model.dimensions.contextLength,
                                                 maxAnswerTokens: options.maxAnswerTokens)
        let workers = threading == .rows ? threads : 1
        BLASThreads.set(threading == .rows ? 1 : threads)
        let attributor = try SampleAttributor(model: model, options: options, workers: workers)
        let points = options.quadrature().count, hasCleanPoint = options.quadrature().contains { $0.alpha == 1 }
        var timings: [AttributionSampleTiming] = []
        if let scoresOut { try FileManager.default.createDirectory(atPath: scoresOut, withIntermediateDirectories: true) }
        // One untimed warm-up sample (page-in of the weights, first-touch of the workspaces).
        _ = try attributor.attribute(prompt: samples[0].prompt, answer: samples[0].answer)
        let start = Date()
        var last = start
        try attributor.attribute(samples: samples.map { ($0.prompt, $0.answer) }) { i, r in
            let s = samples[i]
            let now = Date()
            let minimal = minimalFLOPs(model.dimensions, block: model.blocks[0], prompt: s.prompt.count, answer: r.answerTokens, points: points,
                                       clean: hasCleanPoint)
            timings.append(AttributionSampleTiming(
                index: s.index, promptTokens: s.prompt.count, answerTokens: r.answerTokens, rows: r.rows, gflop: r.flops / 1e9,
                minimalGFLOP: minimal / 1e9, peakChunkBytes: r.peakChunkBytes, promptIDs: s.prompt, answerIDs: s.answer,
                attributionSums: r.attributionSums, probabilityClean: r.probabilityClean,
                probabilityZero: r.probabilityZero.map { $0.isNaN ? nil : $0 }))
            log(String(format: "sample %d: X=%d Y=%d rows=%d  done after %.2f s (+%.2f s)  %.1f GFLOP counted, %.1f minimal", s.index,
                       s.prompt.count, r.answerTokens, r.rows, now.timeIntervalSince(start), now.timeIntervalSince(last), r.flops / 1e9, minimal / 1e9))
            last = now
            if let scoresOut {
                let d = model.dimensions
                try SafetensorsWriter.write([.float64("scores", r.scores, shape: [d.layers, d.ffnWidth])],
                                            to: (scoresOut as NSString).appendingPathComponent("sample-\(i).safetensors"))
            }
        }
        let seconds = Date().timeIntervalSince(start)
        let counted = timings.reduce(0) { $0 + $1.gflop }, minimal = timings.reduce(0) { $0 + $1.minimalGFLOP }

        var peaks: [String: Double] = [:]
        BLASThreads.set(1)
        peaks["square 2048 (1 thread)"] = sgemmRate(m: 2048, n: 2048, k: 2048)
        let d = model.dimensions
        for (name, m, n, k) in [("ffn 300x\(d.width)x\(d.ffnWidth) (1 thread)", 300, d.ffnWidth, d.width),
                                ("head 128x\(d.width)x\(d.vocabulary) (1 thread)", 128, d.vocabulary, d.width)] {
            peaks[name] = sgemmRate(m: m, n: n, k: k)
        }
        if threads > 1 {
            BLASThreads.set(threads)
            peaks["square 2048 (\(threads) threads)"] = sgemmRate(m: 2048, n: 2048, k: 2048)
            BLASThreads.set(threading == .rows ? 1 : threads)
        }
        // Memory against the row budget, on the first sample, one worker.
        var memory: [RowBudgetMemory] = []
        for b in budgets {
            var o = options
            o.rowBudget = b
            let t = Date()
            let r = try SampleAttributor(model: model, options: o).attribute(prompt: samples[0].prompt, answer: samples[0].answer)
            memory.append(RowBudgetMemory(rowBudget: b, peakChunkBytes: r.peakChunkBytes, seconds: Date().timeIntervalSince(t)))
            log(String(format: "row budget %5d: one worker's buffers %.1f MB, %.2f s", b, Double(r.peakChunkBytes) / 1e6, memory.last!.seconds))
        }
        return AttributionBenchmarkResult(threads: threads, threading: threading.rawValue, normalization: options.normalization.rawValue,
                                          pointsPerLayer: points, samples: timings, seconds: seconds, gflopPerSecond: counted / seconds,
                                          minimalGFLOPPerSecond: minimal / seconds, sgemmGFLOPs: peaks, memory: memory)
    }

    /// SPEC's shortcut at its cheapest, from shapes alone (see `AttributionSampleTiming.minimalGFLOP`).
    /// `clean`: the rule has the point α = 1, whose rows are the clean run at every layer, so
    /// one row per answer token from layer 0 serves them all.
    static func minimalFLOPs(_ d: ModelDimensions, block b: DecoderBlock, prompt X: Int, answer Y: Int, points: Int, clean: Bool) -> Double {
        let (D, J, V, L) = (Double(d.width), Double(d.ffnWidth), Double(d.vocabulary), d.layers)
        let (QW, KW, HE) = (Double(b.queryWidth), Double(b.kvWidth), Double(d.heads * d.headDim))
        let ffnInputs = b.ffnUp == nil ? 1.0 : 2.0
        let products = 2 * (D * (QW + 2 * KW) + QW * D + ffnInputs * J * D + J * D)   // one token, one layer
        let T = Double(X + Y - 1)
        // Clean pass: every product for T tokens, causal attention (QKᵀ and PV over i + 1 keys), the head at Y rows.
        var flops = Double(L) * (T * products + 2 * 2 * HE * T * (T + 1) / 2) + 2 * Double(Y) * V * D
        // Rows: forward and the same products backward.
        for m in 0..<Y {
            let keys = Double(X + m)                      // the prefix before p_m and the row's own key
            func forward(_ l: Int) -> Double { 2 * J * D + Double(L - 1 - l) * (products + 2 * 2 * HE * keys) + 2 * V * D }
            for l in 0..<L { flops += Double(points - (clean ? 1 : 0)) * 2 * forward(l) }
            if clean { flops += 2 * forward(0) }
        }
        return flops
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
