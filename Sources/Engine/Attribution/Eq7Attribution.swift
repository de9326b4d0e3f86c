// Eq. 7 for one sample: one clean pass, then single-token rows (m, l, α) forward and backward.
import Foundation

/// Computes score_i(l, j) = (1/Y)·Σ_m ω̄_l[j]·Σ_n w_n·∂P_m/∂ω_l[j] at ω_l[p_m] = (n/S)·ω̄_l (SPEC).
///
/// Why it is cheap and exact: only position p_m is patched and attention is causal, so every
/// position before p_m equals the clean run at every layer. One clean, teacher-forced pass over
/// x ⊕ y keeps all keys/values (the KV cache) and, at each p_m and layer, the residual after
/// attention r, the FFN's ω̄ and (SwiGLU) u. A row (m, l, n) then starts at layer l's FFN with
/// ω = α·ω̄, runs layers l+1… for its single token against the cached prefix, the final norm
/// and LM head, and its backward returns to ω_l. Rows of different (m, l, n) are independent,
/// so a chunk of rows runs as one batch: a row joins at its own layer.
public final class SampleAttributor {
    public let model: TransformerModel
    public let options: AttributionOptions
    private var tapes: [BlockTape]
    private let gradients = BlockGradients()
    private var enterOmega: [FloatBuffer]
    private var enterUp: [FloatBuffer]
    /// Sees each row's ∂P_m/∂ω_l [J] (at ω_l[p_m] = α·ω̄_l) as it is computed: for checks
    /// against finite differences and for studying integrands; nil in normal runs.
    public var onRowGradient: ((_ m: Int, _ layer: Int, _ point: Int, _ gradient: UnsafeBufferPointer<Float>) -> Void)?

    public init(model: TransformerModel, options: AttributionOptions = AttributionOptions()) throws {
        try options.validate()
        self.model = model
        self.options = options
        let L = model.dimensions.layers
        tapes = (0..<L).map { _ in BlockTape() }
        enterOmega = (0..<L).map { _ in FloatBuffer() }
        enterUp = (0..<L).map { _ in FloatBuffer() }
    }

    /// One row: answer token m (0-based), layer l, integrand point n (α = n/S).
    struct Row { let m: Int; let l: Int; let n: Int }

    public func attribute(prompt: [Int], answer fullAnswer: [Int]) throws -> SampleAttribution {
        let d = model.dimensions
        let (L, J, D, S) = (d.layers, d.ffnWidth, d.width, options.steps)
        guard !prompt.isEmpty else { throw AttributionError.emptyPrompt }
        guard !fullAnswer.isEmpty else { throw AttributionError.emptyAnswer }
        let answer = options.maxAnswerTokens.map { Array(fullAnswer.prefix($0)) } ?? fullAnswer
        let (X, Y) = (prompt.count, answer.count)
        // z_Y = x ⊕ y_{<Y}: the last answer token is only ever a target.
        let input = prompt + answer.dropLast()
        guard input.count <= d.contextLength else { throw AttributionError.tooLong(tokens: input.count, context: d.contextLength) }
        let gated = model.blocks[0].ffnUp != nil

        // MARK: Clean pass: cache every key/value; keep r, ω̄, u at each p_m = X − 1 + m.
        let cache = model.makeCache(capacity: input.count)
        let capResidual = FloatBuffer(count: L * Y * D)   // [L, Y, D]
        let capOmega = FloatBuffer(count: L * Y * J)      // [L, Y, J]
        let capUp = FloatBuffer(count: gated ? L * Y * J : 1)
        _ = try model.forward(input, cache: cache, logits: .none) { layer, tape in
            let t = tape.pointers
            for m in 0..<Y {
                let row = X - 1 + m
                (capResidual.pointer + (layer * Y + m) * D).update(from: t.residual + row * D, count: D)
                (capOmega.pointer + (layer * Y + m) * J).update(from: t.omega + row * J, count: J)
                if gated { (capUp.pointer + (layer * Y + m) * J).update(from: t.up + row * J, count: J) }
            }
        }

        // MARK: Rows, in chunks of at most `rowBudget` (ordered by m, then l, then n).
        var all: [Row] = []
        all.reserveCapacity(Y * L * (S + 1))
        for m in 0..<Y { for l in 0..<L { for n in 0...S { all.append(Row(m: m, l: l, n: n)) } } }
        var scores = [Double](repeating: 0, count: L * J)
        var pClean = [Double](repeating: 0, count: Y * L), pZero = [Double](repeating: 0, count: Y * L)
        var flops = 0.0
        var peak = 0
        var start = 0
        while start < all.count {
            let end = min(all.count, start + options.rowBudget)
            // Within a chunk rows are sorted by layer: the rows active at layer k (l ≤ k) are a
            // prefix, and those entering at k are its end.
            let rows = all[start..<end].sorted { ($0.l, $0.m, $0.n) < ($1.l, $1.m, $1.n) }
            let (f, bytes) = try runChunk(rows, X: X, answer: answer, cache: cache, capResidual: capResidual, capOmega: capOmega,
                                          capUp: gated ? capUp : nil, scores: &scores, pClean: &pClean, pZero: &pZero)
            flops += f
            peak = max(peak, bytes)
            start = end
        }
        return SampleAttribution(scores: scores, answerTokens: Y, probabilityClean: pClean, probabilityZero: pZero,
                                 rows: all.count, flops: flops, peakChunkBytes: peak)
    }

    // MARK: - One chunk: forward to the logits, softmax, backward to each row's ω

    private func runChunk(_ rows: [Row], X: Int, answer: [Int], cache: KVCache, capResidual: FloatBuffer, capOmega: FloatBuffer,
                          capUp: FloatBuffer?, scores: inout [Double], pClean: inout [Double], pZero: inout [Double]) throws -> (Double, Int) {
        let d = model.dimensions
        let (L, J, D, V, S, Y) = (d.layers, d.ffnWidth, d.width, d.vocabulary, options.steps, answer.count)
        let R = rows.count
        let positions = rows.map { X - 1 + $0.m }
        let rotaryRows = RotaryRows(model.rotary, positions: positions)
        // active[k] = rows with l ≤ k (a prefix of `rows`).
        var active = [Int](repeating: 0, count: L)
        for r in rows { active[r.l] += 1 }
        for k in 1..<L { active[k] += active[k - 1] }
        let lmin = rows[0].l
        let x = FloatBuffer(count: R * D)
        let hidden = FloatBuffer(count: R * J)
        var flops = 0.0
        let b0 = model.blocks[0]
        let (QW, KW, H, E) = (b0.queryWidth, b0.kvWidth, d.heads, d.headDim)
        let gemmPerRow = 2.0 * Double(D * (QW + 2 * KW) + QW * D + J * D * (capUp == nil ? 1 : 2) + J * D)

        // Forward.
        for k in lmin..<L {
            let prev = k == 0 ? 0 : active[k - 1]
            let enter = active[k] - prev
            let block = model.blocks[k]
            if prev > 0 {
                block.forward(x.pointer, rows: prev, positions: Array(positions[0..<prev]), rotaryRows: rotaryRows,
                              keys: cache.keys(layer: k), values: cache.values(layer: k), writeCache: false, tape: tapes[k])
                let keysSeen = positions[0..<prev].reduce(0) { $0 + $1 + 1 }
                flops += 2 * (gemmPerRow * Double(prev) + 4.0 * Double(H * E * keysSeen))   // forward and backward
            }
            if enter > 0 {
                enterOmega[k].ensure(enter * J)
                if capUp != nil { enterUp[k].ensure(enter * J) }
                for i in 0..<enter {
                    let row = rows[prev + i]
                    let alpha = Float(row.n) / Float(S)
                    let src = (k * Y + row.m)
                    (x.pointer + (prev + i) * D).update(from: capResidual.pointer + src * D, count: D)
                    let w = enterOmega[k].pointer + i * J, clean = capOmega.pointer + src * J
                    for j in 0..<J { w[j] = alpha * clean[j] }
                    if let capUp { (enterUp[k].pointer + i * J).update(from: capUp.pointer + src * J, count: J) }
                }
                block.ffnFromOmega(rows: enter, omega: enterOmega[k].pointer, up: capUp == nil ? nil : enterUp[k].pointer,
                                   hidden: hidden.pointer, into: x.pointer + prev * D)
                flops += 2 * 2.0 * Double(enter * J * D)
            }
        }

        // Head: P = softmax(logits)[y]; dP/dlogits = P·(e_y − p).
        let logits = FloatBuffer(count: R * V)
        let normed = FloatBuffer(count: R * D), stats = FloatBuffer(count: 2 * R)
        model.head(x.pointer, rows: R, normed: normed.pointer, stats: stats.pointer, into: logits.pointer)
        flops += 2 * 2.0 * Double(R * V * D)
        for (r, row) in rows.enumerated() {
            let z = logits.pointer + r * V
            softmaxInPlace(z, count: V)
            let y = answer[row.m]
            let p = z[y]
            if row.n == S { pClean[row.m * L + row.l] = Double(p) }
            if row.n == 0 { pZero[row.m * L + row.l] = Double(p) }
            for v in 0..<V { z[v] *= -p }
            z[y] += p
        }
        let dx = FloatBuffer(count: R * D)
        model.headBackward(logits.pointer, h: x.pointer, stats: stats.pointer, rows: R, scratch: normed.pointer, into: dx.pointer)

        // Backward, layer by layer; rows leave at the layer they entered, with their dω.
        let dOmega = FloatBuffer(count: R * J)
        let yInverse = 1.0 / Double(Y)
        for k in (lmin..<L).reversed() {
            let prev = k == 0 ? 0 : active[k - 1]
            let enter = active[k] - prev
            let block = model.blocks[k]
            if enter > 0 {
                block.omegaGradient(dOut: dx.pointer + prev * D, rows: enter, omega: enterOmega[k].pointer,
                                    up: capUp == nil ? nil : enterUp[k].pointer, scratch: hidden.pointer, into: dOmega.pointer)
                if let sink = onRowGradient {
                    for i in 0..<enter {
                        let row = rows[prev + i]
                        sink(row.m, row.l, row.n, UnsafeBufferPointer(start: dOmega.pointer + i * J, count: J))
                    }
                }
                scores.withUnsafeMutableBufferPointer { sc in
                    let out = sc.baseAddress! + k * J
                    for i in 0..<enter {
                        let row = rows[prev + i]
                        let w = options.weight(point: row.n) * yInverse
                        let clean = capOmega.pointer + (k * Y + row.m) * J, g = dOmega.pointer + i * J
                        for j in 0..<J { out[j] += w * Double(clean[j]) * Double(g[j]) }
                    }
                }
            }
            if prev > 0 {
                block.backward(dx.pointer, rows: prev, rotaryRows: rotaryRows, keys: cache.keys(layer: k), values: cache.values(layer: k),
                               tape: tapes[k], grads: gradients)
            }
        }
        let bytes = tapes.reduce(0) { $0 + $1.bytes } + 4 * (logits.capacity + x.capacity + dx.capacity + hidden.capacity + dOmega.capacity + normed.capacity)
            + 4 * (enterOmega.reduce(0) { $0 + $1.capacity } + enterUp.reduce(0) { $0 + $1.capacity })
        return (flops, bytes)
    }
}

/// Eq. 7 score of one sample (SPEC): `[L × J]` scores and the answer-token count Y.
public func attributeSample(model: TransformerModel, prompt: [Int], answer: [Int],
                            options: AttributionOptions = AttributionOptions()) throws -> SampleAttribution {
    try SampleAttributor(model: model, options: options).attribute(prompt: prompt, answer: answer)
}
