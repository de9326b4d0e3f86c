// Eq. 7 for a stream of samples: per sample one clean pass, then row batches, merged in a fixed order.
import Foundation

/// Computes score_i(l, j) = (1/Y)·Σ_m ω̄_l[j]·Σ_k w_k·∂P_m/∂ω_l[j] at ω_l[p_m] = α_k·ω̄_l (SPEC).
///
/// Why it is cheap and exact: only position p_m is patched and attention is causal, so every
/// position before p_m equals the clean run at every layer. One clean, teacher-forced pass over
/// x ⊕ y keeps all keys/values (the KV cache) and, at each p_m and layer, the residual after
/// attention r, the FFN's ω̄ and (SwiGLU) u. A row (m, l, k) then starts at layer l's FFN with
/// ω = α_k·ω̄, runs layers l+1… for its single token against the cached prefix, the final norm
/// and LM head, and its backward returns to ω_l (RowBatch.swift). Rows are independent.
///
/// Work split: a sample's rows, sorted by (l, m, k), are cut into batches of `rowBudget` rows
/// (so a batch holds every answer token's rows of its layers and the low layers' products are
/// tall). With `workers` > 1, threads take whole batches, each with one BLAS thread, and run
/// ahead into the next sample's clean pass (RowWorkers.swift). Each batch sums its own rows'
/// scores; a sample's score adds the batches' sums in batch order. The batches depend on the
/// sample and the options only, so the bytes are the same for any worker or rank count.
public final class SampleAttributor {
    public let model: TransformerModel
    public let options: AttributionOptions
    /// Threads over row batches (1: the caller's thread, with the BLAS threads as they are set).
    public let workers: Int
    /// Sees each row's ∂P_m/∂ω_l [J] (at ω_l[p_m] = α_k·ω̄_l) as it is computed: for checks
    /// against finite differences and for studying integrands; nil in normal runs. With several
    /// workers it is called under a lock, in no fixed order.
    public var onRowGradient: ((_ m: Int, _ layer: Int, _ point: Int, _ gradient: UnsafeBufferPointer<Float>) -> Void)?
    let quadrature: [(alpha: Float, weight: Double)]
    /// The point with α = 1, if the rule has one (the paper's rules: n = S).
    let cleanPoint: Int?
    let workspaces: [RowWorkspace]
    let gradientLock = NSLock()

    public convenience init(model: TransformerModel, options: AttributionOptions = AttributionOptions(), workers: Int = 1) throws {
        guard model.slice.isFull else {
            throw AttributionError.badOption("stage \(model.slice.stage) holds layers \(model.slice.layers) only: attribute it with StageAttributor")
        }
        try self.init(anySlice: model, options: options, workers: workers)
    }

    /// The rows' machinery for one pipeline stage (StageAttributor drives it).
    convenience init(stageOf model: TransformerModel, options: AttributionOptions) throws {
        try self.init(anySlice: model, options: options, workers: 1)
    }

    private init(anySlice model: TransformerModel, options: AttributionOptions, workers: Int) throws {
        try options.validate()
        guard workers >= 1 else { throw AttributionError.badOption("workers must be at least 1, got \(workers)") }
        self.model = model
        self.options = options
        self.workers = workers
        quadrature = options.quadrature()
        cleanPoint = quadrature.firstIndex { $0.alpha == 1 }
        workspaces = (0..<workers).map { _ in RowWorkspace(layers: model.dimensions.layers) }
    }

    /// One row: answer token m (0-based), layer l, integrand point k (α_k, weight w_k). The row
    /// (m, 0, cleanPoint) also stands for (m, l, cleanPoint) at every l ≥ 1.
    struct Row { let m: Int; let l: Int; let k: Int }

    /// One sample.
    public func attribute(prompt: [Int], answer: [Int]) throws -> SampleAttribution {
        var result: SampleAttribution?
        do {
            try attribute(samples: [(prompt, answer)]) { _, r in result = r }
        } catch let failure as SampleAttributionFailure {
            throw failure.underlying
        }
        return result!
    }

    /// Attributes `samples` and hands each result to `onResult` in sample order, on the
    /// caller's thread. A sample that cannot be attributed ends the stream with a
    /// `SampleAttributionFailure` after every earlier sample has been handed over; an error
    /// from `onResult` ends it at once.
    public func attribute(samples: [(prompt: [Int], answer: [Int])], onResult: (Int, SampleAttribution) throws -> Void) throws {
        if workers == 1 {
            for (i, s) in samples.enumerated() {
                let plan: SamplePlan
                do { plan = try prepare(prompt: s.prompt, answer: s.answer) } catch { throw SampleAttributionFailure(index: i, underlying: error) }
                let parts = plan.batches.map { runBatch(plan, rows: $0, workspace: workspaces[0]) }
                try onResult(i, merge(plan, parts))
            }
        } else {
            try RowWorkers(attributor: self, samples: samples).run(onResult: onResult)
        }
    }

    // MARK: - The clean pass and the plan

    /// A sample ready for its rows: the clean pass's cache and captures, the rows, the batches.
    /// A pipeline stage's plan holds the cache and captures of its own layers only.
    final class SamplePlan: @unchecked Sendable {
        let X: Int, answer: [Int]
        let cache: KVCache
        let capResidual, capOmega: FloatBuffer    // [layers held, Y, D], [layers held, Y, J]
        let capUp: FloatBuffer?                   // [layers held, Y, J] (SwiGLU)
        let pClean: [Double]                      // [Y] (empty on a stage without the head)
        let rows: [Row]                           // sorted by (l, m, k)
        let batches: [Range<Int>]
        init(X: Int, answer: [Int], cache: KVCache, capResidual: FloatBuffer, capOmega: FloatBuffer, capUp: FloatBuffer?,
             pClean: [Double], rows: [Row], batches: [Range<Int>]) {
            self.X = X; self.answer = answer; self.cache = cache; self.capResidual = capResidual; self.capOmega = capOmega
            self.capUp = capUp; self.pClean = pClean; self.rows = rows; self.batches = batches
        }
        var Y: Int { answer.count }
        /// Index of (layer, answer token m) in the captures.
        func capture(layer: Int, m: Int) -> Int { (layer - cache.firstLayer) * Y + m }
    }

    /// The answer tokens attributed (the first `maxAnswerTokens`, if set) and the rows of a
    /// sample, cut into batches: these depend only on the sample and the options, so every
    /// stage of a pipeline makes the same ones.
    func rowPlan(answer fullAnswer: [Int]) -> (answer: [Int], rows: [Row], batches: [Range<Int>]) {
        let L = model.dimensions.layers
        let answer = options.maxAnswerTokens.map { Array(fullAnswer.prefix($0)) } ?? fullAnswer
        // At α = 1 every layer's row is the clean run itself: one row from layer 0 gives ∂P_m/∂ω_l
        // at α = 1 for every l on its way back (RowBatch), so rows (m, l ≥ 1, α = 1) are not made.
        var rows: [Row] = []
        rows.reserveCapacity(L * answer.count * quadrature.count)
        for l in 0..<L { for m in answer.indices { for k in quadrature.indices where l == 0 || k != cleanPoint { rows.append(Row(m: m, l: l, k: k)) } } }
        let batches = stride(from: 0, to: rows.count, by: options.rowBudget).map { $0..<min(rows.count, $0 + options.rowBudget) }
        return (answer, rows, batches)
    }

    /// Checks the sample, runs the clean pass (cache every key/value; keep r, ω̄, u at each
    /// p_m = X − 1 + m, and P_m(1) from the clean logits) and cuts the rows into batches.
    /// On a pipeline stage (`link`), the pass covers the stage's layers: the hidden states come
    /// from the previous stage (or the embedding) and go on to the next (or the head).
    func prepare(prompt: [Int], answer fullAnswer: [Int], link: StageLink? = nil) throws -> SamplePlan {
        let d = model.dimensions
        let (J, D, V) = (d.ffnWidth, d.width, d.vocabulary)
        let slice = model.slice
        guard !prompt.isEmpty else { throw AttributionError.emptyPrompt }
        guard !fullAnswer.isEmpty else { throw AttributionError.emptyAnswer }
        let (answer, rows, batches) = rowPlan(answer: fullAnswer)
        let (X, Y) = (prompt.count, answer.count)
        // z_Y = x ⊕ y_{<Y}: the last answer token is only ever a target.
        let input = prompt + answer.dropLast()
        let T = input.count
        guard T <= d.contextLength else { throw AttributionError.tooLong(tokens: T, context: d.contextLength) }
        for tok in input where tok < 0 || tok >= V { throw ModelError.tokenOutOfRange(token: tok, vocabulary: V) }
        let held = slice.layers.count
        let gated = model.blocks[0].ffnUp != nil
        let cache = model.makeCache(capacity: T)
        let capResidual = FloatBuffer(count: held * Y * D), capOmega = FloatBuffer(count: held * Y * J)
        let capUp = gated ? FloatBuffer(count: held * Y * J) : nil
        let positions = Array(0..<T)
        let x = FloatBuffer(count: T * D)
        if slice.holdsEmbedding {
            model.embed(input, positions: positions, into: x.pointer)
        } else {
            try link!.receiveFromPrevious(x.pointer, count: T * D)
        }
        model.forwardLayers(x.pointer, rows: T, positions: positions, rotaryRows: RotaryRows(model, positions: positions),
                            cache: cache, tape: BlockTape()) { layer, tape in
            let t = tape.pointers
            for m in 0..<Y {
                let row = X - 1 + m, c = (layer - slice.layers.lowerBound) * Y + m
                (capResidual.pointer + c * D).update(from: t.residual + row * D, count: D)
                (capOmega.pointer + c * J).update(from: t.omega + row * J, count: J)
                if let capUp { (capUp.pointer + c * J).update(from: t.up + row * J, count: J) }
            }
        }
        cache.advance(by: T)
        guard slice.holdsHead else {
            try link!.sendToNext(x.pointer, count: T * D)
            return SamplePlan(X: X, answer: answer, cache: cache, capResidual: capResidual, capOmega: capOmega, capUp: capUp,
                              pClean: [], rows: rows, batches: batches)
        }
        // Logits of the last Y positions, p_1 … p_Y.
        let logits = model.logits(ofHidden: x.pointer + (T - Y) * D, rows: Y)
        let pClean: [Double] = logits.withUnsafeBufferPointer { lb in
            (0..<Y).map { m in
                let z = lb.baseAddress! + m * V
                let top = (0..<V).reduce(-Float.infinity) { max($0, z[$1]) }
                var sum = 0.0
                for v in 0..<V { sum += Foundation.exp(Double(z[v] - top)) }
                return Foundation.exp(Double(z[answer[m]] - top)) / sum
            }
        }
        return SamplePlan(X: X, answer: answer, cache: cache, capResidual: capResidual, capOmega: capOmega, capUp: capUp,
                          pClean: pClean, rows: rows, batches: batches)
    }

    /// The sample's result from its batches' sums, added in batch order.
    func merge(_ plan: SamplePlan, _ parts: [BatchResult]) -> SampleAttribution {
        let d = model.dimensions
        let (L, J, Y) = (d.layers, d.ffnWidth, plan.Y)
        var scores = [Double](repeating: 0, count: L * J)
        var pZero = [Double](repeating: .nan, count: Y * L), sums = [Double](repeating: 0, count: Y * L)
        var flops = 0.0, peak = 0
        for part in parts {
            for (i, v) in part.scores.enumerated() { scores[part.firstLayer * J + i] += v }
            for (i, v) in part.sums { sums[i] += v }
            for (i, v) in part.pZero { pZero[i] = v }
            flops += part.flops
            peak = max(peak, part.bytes)
        }
        let pClean = (0..<(Y * L)).map { plan.pClean[$0 / L] }
        return SampleAttribution(scores: scores, answerTokens: Y, probabilityClean: pClean, probabilityZero: pZero,
                                 attributionSums: sums, rows: plan.rows.count, flops: flops, peakChunkBytes: peak)
    }
}

/// What attributes a stream of samples and hands each result over in sample order: the whole
/// model (SampleAttributor) or stage 0 of a pipeline (StageAttributor).
public protocol SampleStreamAttributor: AnyObject {
    func attribute(samples: [(prompt: [Int], answer: [Int])], onResult: (Int, SampleAttribution) throws -> Void) throws
}

extension SampleAttributor: SampleStreamAttributor {}
extension StageAttributor: SampleStreamAttributor {}

/// A sample of a stream that could not be attributed (its index in the stream).
public struct SampleAttributionFailure: Error, LocalizedError {
    public let index: Int
    public let underlying: Error
    public var errorDescription: String? { underlying.localizedDescription }
}

/// Eq. 7 score of one sample (SPEC): `[L × J]` scores and the answer-token count Y.
public func attributeSample(model: TransformerModel, prompt: [Int], answer: [Int],
                            options: AttributionOptions = AttributionOptions()) throws -> SampleAttribution {
    try SampleAttributor(model: model, options: options).attribute(prompt: prompt, answer: answer)
}
