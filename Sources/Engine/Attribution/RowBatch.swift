// One batch of Eq. 7 rows: forward from each row's layer to the logits, ∂P/∂logits, backward to each row's ω.
import Foundation

/// What one batch adds to its sample: the scores of its layers, the per-(m, l) attribution
/// sums and P(0)s of its rows, its FLOPs and the memory it held.
struct BatchResult: @unchecked Sendable {
    /// [layers firstLayer…, J]: Σ over the batch's rows of w_k/Y · ω̄ ⊙ ∂P/∂ω.
    let firstLayer: Int
    let scores: [Double]
    let sums: [(Int, Double)]      // (m·L + l, Σ_j attr contribution)
    let pZero: [(Int, Double)]     // (m·L + l, P_m(0))
    let flops: Double
    let bytes: Int
}

/// The buffers of one worker, reused from batch to batch (a fresh R × V logits buffer per
/// batch cost page faults and zeroing: 3 % of the time before).
final class RowWorkspace {
    let tapes: [BlockTape]
    let gradients = BlockGradients()
    let enterOmega: [FloatBuffer], enterUp: [FloatBuffer]
    /// The entering rows' FFN output-norm tape per layer (Gemma 3's post-FFN norm; else unused).
    let enterOutput: [FloatBuffer]
    let x = FloatBuffer(), hidden = FloatBuffer(), dx = FloatBuffer(), dOmega = FloatBuffer()
    let logits = FloatBuffer(), normed = FloatBuffer(), stats = FloatBuffer()

    init(layers: Int) {
        tapes = (0..<layers).map { _ in BlockTape() }
        for t in tapes.dropFirst() { t.shareForwardScratch(with: tapes[0]) }
        enterOmega = (0..<layers).map { _ in FloatBuffer() }
        enterUp = (0..<layers).map { _ in FloatBuffer() }
        enterOutput = (0..<layers).map { _ in FloatBuffer() }
    }

    /// Layer k's output-norm tape for `rows` entering rows, if its block has that norm.
    func outputTape(layer k: Int, block: DecoderBlock, rows: Int, width: Int) -> DecoderBlock.OutputNormTape? {
        guard block.ffnOutputNorm != nil else { return nil }
        enterOutput[k].ensure(DecoderBlock.OutputNormTape.floats(rows: rows, width: width))
        return DecoderBlock.OutputNormTape(base: enterOutput[k].pointer, rows: rows, width: width)
    }

    /// Bytes held (the shared forward scratch once).
    var bytes: Int {
        tapes.reduce(0) { $0 + $1.bytes(ownOnly: true) } + tapes[0].bytes() - tapes[0].bytes(ownOnly: true)
            + gradients.bytes
            + 4 * ([x, hidden, dx, dOmega, logits, normed, stats] + enterOmega + enterUp + enterOutput).reduce(0) { $0 + $1.capacity }
    }
}

extension BlockGradients {
    var bytes: Int { 4 * [dHidden, dOmega, dUp, dFFNInput, dResidual, dAttended, dq, dk, dv, dNormed, dOutput].reduce(0) { $0 + $1.capacity } }
}

extension SampleAttributor {
    /// Rows through the LM head at a time, so that memory no longer grows with R × V (256 ×
    /// 49,152 floats for SmolLM2: 50 MB, against 118 MB for a whole 600-row batch). Measured on
    /// 3 GSM8K samples, one thread: slab 128 27.3 s, 256 27.0 s, 600 26.5 s (the head's sgemm
    /// is 83, 87 and 91 GFLOP/s at 128, 256 and 600 rows).
    static let headSlab = 256

    /// Runs `plan.rows[range]` (sorted by layer: the rows active at layer k, those with l ≤ k,
    /// are a prefix, and those entering at k are its end) and returns their contribution: the
    /// whole model's forward from the lowest entry layer, the head, and the backward.
    func runBatch(_ plan: SamplePlan, rows range: Range<Int>, workspace ws: RowWorkspace) -> BatchResult {
        let batch = BatchLayout(plan, rows: range, model: model, cleanPoint: cleanPoint)
        let layers = batch.lmin..<model.dimensions.layers
        var flops = forwardRows(plan, batch, layers: layers, workspace: ws)
        let (pZero, headFLOPs) = headRows(plan, batch, workspace: ws)
        flops += headFLOPs
        let (scores, sums) = backwardRows(plan, batch, layers: layers, workspace: ws)
        return BatchResult(firstLayer: layers.lowerBound, scores: scores, sums: sums, pZero: pZero, flops: flops, bytes: ws.bytes)
    }

    /// A batch's rows and who is active where: `active[k]` rows have l ≤ k (a prefix of `rows`).
    struct BatchLayout {
        let rows: [Row]
        let positions: [Int]
        let rotaryRows: RotaryRows
        let active: [Int]
        /// The lowest entry layer (batches are never empty: SamplePlan.batches).
        let lmin: Int
        /// The clean rows (l = 0, α = 1): they stand for every layer's α = 1.
        let cleanRows: [Int]
        var count: Int { rows.count }
        /// Rows that arrive at layer k from below (those with l < k).
        func arriving(at k: Int) -> Int { k == 0 ? 0 : active[k - 1] }

        init(_ plan: SamplePlan, rows range: Range<Int>, model: TransformerModel, cleanPoint: Int?) {
            rows = Array(plan.rows[range])
            positions = rows.map { plan.X - 1 + $0.m }
            rotaryRows = RotaryRows(model, positions: positions)
            let L = model.dimensions.layers
            var active = [Int](repeating: 0, count: L)
            for r in rows { active[r.l] += 1 }
            for k in 1..<L { active[k] += active[k - 1] }
            self.active = active
            lmin = rows[0].l
            let rows = rows
            cleanRows = cleanPoint.map { c in (0..<rows.count).filter { rows[$0].l == 0 && rows[$0].k == c } } ?? []
        }
    }

    /// Forward through `layers` (a range at or above `lmin`): the rows arriving at its first
    /// layer are in ws.x already (from the layer below, or from the previous stage); rows
    /// entering at each layer join at the end. Returns the FLOPs (forward and backward).
    func forwardRows(_ plan: SamplePlan, _ batch: BatchLayout, layers: Range<Int>, workspace ws: RowWorkspace) -> Double {
        let d = model.dimensions
        let (J, D) = (d.ffnWidth, d.width)
        let (rows, positions, R) = (batch.rows, batch.positions, batch.count)
        ws.x.ensure(R * D); ws.hidden.ensure(R * J)
        let x = ws.x.pointer, hidden = ws.hidden.pointer
        let capUp = plan.capUp
        var flops = 0.0
        let b0 = model.block(layers.lowerBound)
        let (QW, KW, H, E) = (b0.queryWidth, b0.kvWidth, d.heads, d.headDim)
        let gemmPerRow = 2.0 * Double(D * (QW + 2 * KW) + QW * D + J * D * (capUp == nil ? 1 : 2) + J * D)
        for k in layers {
            let prev = batch.arriving(at: k)
            let enter = batch.active[k] - prev
            let block = model.block(k)
            if prev > 0 {
                block.forward(x, rows: prev, positions: Array(positions[0..<prev]), rotaryRows: batch.rotaryRows,
                              keys: plan.cache.keys(layer: k), values: plan.cache.values(layer: k), writeCache: false, tape: ws.tapes[k])
                let keysSeen = positions[0..<prev].reduce(0) { $0 + $1 + 1 }
                flops += 2 * (gemmPerRow * Double(prev) + 4.0 * Double(H * E * keysSeen))   // forward and backward
            }
            if enter > 0 {
                ws.enterOmega[k].ensure(enter * J)
                if capUp != nil { ws.enterUp[k].ensure(enter * J) }
                for i in 0..<enter {
                    let row = rows[prev + i]
                    let alpha = quadrature[row.k].alpha
                    let src = plan.capture(layer: k, m: row.m)
                    (x + (prev + i) * D).update(from: plan.capResidual.pointer + src * D, count: D)
                    let w = ws.enterOmega[k].pointer + i * J, clean = plan.capOmega.pointer + src * J
                    for j in 0..<J { w[j] = alpha * clean[j] }
                    if let capUp { (ws.enterUp[k].pointer + i * J).update(from: capUp.pointer + src * J, count: J) }
                }
                block.ffnFromOmega(rows: enter, omega: ws.enterOmega[k].pointer, up: capUp == nil ? nil : ws.enterUp[k].pointer,
                                   hidden: hidden, outputTape: ws.outputTape(layer: k, block: block, rows: enter, width: D), into: x + prev * D)
                flops += 2 * 2.0 * Double(enter * J * D)
            }
        }
        return flops
    }

    /// The head, a slab at a time, on the final hidden rows in ws.x: P = softmax(logits)[y];
    /// dP/dlogits = P·(e_y − p); ws.dx = dP/dx. Returns the P(0)s of the α = 0 rows and the FLOPs.
    func headRows(_ plan: SamplePlan, _ batch: BatchLayout, workspace ws: RowWorkspace) -> (pZero: [(Int, Double)], flops: Double) {
        let d = model.dimensions
        let (L, D, V) = (d.layers, d.width, d.vocabulary)
        let R = batch.count
        let x = ws.x.pointer
        let slab = min(R, Self.headSlab)
        ws.logits.ensure(slab * V); ws.normed.ensure(slab * D); ws.stats.ensure(2 * slab); ws.dx.ensure(R * D)
        let dx = ws.dx.pointer
        var pZero: [(Int, Double)] = []
        for s0 in stride(from: 0, to: R, by: slab) {
            let n = min(slab, R - s0)
            model.head(x + s0 * D, rows: n, normed: ws.normed.pointer, stats: ws.stats.pointer, into: ws.logits.pointer)
            for i in 0..<n {
                let row = batch.rows[s0 + i]
                let p = VectorMath.probabilityGradient(ws.logits.pointer + i * V, count: V, target: plan.answer[row.m])
                if quadrature[row.k].alpha == 0 { pZero.append((row.m * L + row.l, Double(p))) }
            }
            model.headBackward(ws.logits.pointer, h: x + s0 * D, stats: ws.stats.pointer, rows: n, scratch: ws.normed.pointer,
                               into: dx + s0 * D)
        }
        return (pZero, 2 * 2.0 * Double(R * V * D))
    }

    /// Backward through `layers`, top down, from ws.dx (the gradient of the rows leaving its top
    /// layer); rows leave at the layer they entered, with their dω, and ws.dx ends holding the
    /// gradient of the rows that arrived at its first layer. Returns the scores of `layers`
    /// ([layers.count, J], Σ over rows of w_k/Y · ω̄ ⊙ ∂P/∂ω) and the per-(m, l) sums.
    func backwardRows(_ plan: SamplePlan, _ batch: BatchLayout, layers: Range<Int>,
                      workspace ws: RowWorkspace) -> (scores: [Double], sums: [(Int, Double)]) {
        let d = model.dimensions
        let (L, J, D, Y) = (d.layers, d.ffnWidth, d.width, plan.Y)
        let (rows, R) = (batch.rows, batch.count)
        ws.dOmega.ensure(R * J)
        let dx = ws.dx.pointer, hidden = ws.hidden.pointer, dOmega = ws.dOmega.pointer
        let capUp = plan.capUp
        let yInverse = 1.0 / Double(Y)
        var sums: [(Int, Double)] = []
        var scores = [Double](repeating: 0, count: layers.count * J)
        let first = layers.lowerBound
        func add(_ row: Row, layer k: Int, gradient g: UnsafePointer<Float>, into out: UnsafeMutablePointer<Double>) {
            let w = quadrature[row.k].weight * yInverse
            let clean = plan.capOmega.pointer + plan.capture(layer: k, m: row.m) * J
            var total = 0.0
            for j in 0..<J {
                let a = w * Double(clean[j]) * Double(g[j])
                out[j] += a
                total += a
            }
            sums.append((row.m * L + k, total * Double(Y)))
        }
        for k in layers.reversed() {
            let prev = batch.arriving(at: k)
            let enter = batch.active[k] - prev
            let block = model.block(k)
            if enter > 0 {
                block.omegaGradient(dOut: dx + prev * D, rows: enter, omega: ws.enterOmega[k].pointer,
                                    up: capUp == nil ? nil : ws.enterUp[k].pointer, scratch: hidden,
                                    outputTape: ws.outputTape(layer: k, block: block, rows: enter, width: D), into: dOmega)
                if let sink = onRowGradient {
                    gradientLock.lock()
                    for i in 0..<enter {
                        let row = rows[prev + i]
                        sink(row.m, row.l, row.k, UnsafeBufferPointer(start: dOmega + i * J, count: J))
                    }
                    gradientLock.unlock()
                }
                scores.withUnsafeMutableBufferPointer { sc in
                    for i in 0..<enter { add(rows[prev + i], layer: k, gradient: dOmega + i * J, into: sc.baseAddress! + (k - first) * J) }
                }
            }
            if prev > 0 {
                block.backward(dx, rows: prev, rotaryRows: batch.rotaryRows, keys: plan.cache.keys(layer: k), values: plan.cache.values(layer: k),
                               tape: ws.tapes[k], grads: ws.gradients)
                // The block's own ∂P/∂ω_k for the clean rows: α = 1 at layer k.
                let g = ws.gradients.pointers.dOmega
                if let sink = onRowGradient, !batch.cleanRows.isEmpty {
                    gradientLock.lock()
                    for i in batch.cleanRows { sink(rows[i].m, k, rows[i].k, UnsafeBufferPointer(start: g + i * J, count: J)) }
                    gradientLock.unlock()
                }
                scores.withUnsafeMutableBufferPointer { sc in
                    for i in batch.cleanRows { add(rows[i], layer: k, gradient: g + i * J, into: sc.baseAddress! + (k - first) * J) }
                }
            }
        }
        return (scores, sums)
    }
}
