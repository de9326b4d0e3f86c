// The training backward of `cnl enhance` (SPEC "Table 2: enhance"): a teacher-forced pass over
// the whole sequence with a tape, the mean answer NLL, and a backward through every position that
// forms weight gradients only for the chosen neurons' slices (never a full weight gradient).
import COpenBLAS
import Foundation

/// The neurons whose parameters train: row j of W_in and its bias for each chosen (l, j), and
/// with `upAndDown` also row j of W_up (and its bias) and column j of W_out: the whole neuron.
public struct NeuronSlices: Sendable, Equatable {
    /// Flat indices l·J + j, ascending and distinct.
    public let neurons: [Int]
    public let upAndDown: Bool

    public init(neurons: [Int], upAndDown: Bool = false) {
        self.neurons = Array(Set(neurons)).sorted()
        self.upAndDown = upAndDown
    }
}

/// The loss of one sample and its gradient on the slices, in the order of `NeuronSlices.neurons`.
/// Every array is [N, D] (one row of D per neuron) or [N]; nil where the model has no such tensor
/// (no biases, no up_proj) or `upAndDown` is off.
public struct SliceGradient: Sendable {
    /// Mean over the answer tokens of −log P(y_m | x ⊕ y_<m).
    public var loss: Double
    public var inWeight: [Double]
    public var inBias: [Double]?
    public var upWeight: [Double]?
    public var upBias: [Double]?
    /// Column j of W_out, as D values.
    public var outWeight: [Double]?
}

extension TransformerModel {
    /// The mean answer NLL of (prompt, answer) and its gradient on `slices`: the whole sequence
    /// x ⊕ y_<Y once forward with a tape per layer, the logits of the Y answer positions, then
    /// every block backward over all positions (the attention's keys and values are variables
    /// here, unlike in the attribution rows), stopping below the lowest chosen layer.
    public func sliceGradient(prompt: [Int], answer: [Int], slices: NeuronSlices) throws -> SliceGradient {
        precondition(slice.isFull, "internal: sliceGradient needs the whole model, this is stage \(slice.stage)")
        let d = dimensions
        let (L, D, J, V) = (d.layers, d.width, d.ffnWidth, d.vocabulary)
        guard !prompt.isEmpty, !answer.isEmpty else { throw ModelError.badConfig(path: "(sample)", key: "answer", detail: "needs a prompt and an answer token") }
        let tokens = prompt + answer.dropLast()
        let (T, X, Y) = (tokens.count, prompt.count, answer.count)
        for tok in tokens + answer where tok < 0 || tok >= V { throw ModelError.tokenOutOfRange(token: tok, vocabulary: V) }
        guard T <= d.contextLength else { throw ModelError.contextOverflow(needed: T, limit: d.contextLength) }
        for n in slices.neurons where n < 0 || n >= L * J {
            throw ModelError.badConfig(path: "(slices)", key: "neurons", detail: "index \(n) is outside 0..<\(L * J)")
        }

        // Forward over every position, one tape per layer (each with its own scratch: the FFN
        // input b and h = act(ω) ⊙ u are read back by the weight gradients).
        let cache = makeCache(capacity: T)
        let positions = Array(0..<T)
        let rotaryRows = RotaryRows(self, positions: positions)
        let x = FloatBuffer(count: T * D)
        embed(tokens, positions: positions, into: x.pointer)
        let lowest = (slices.neurons.first ?? L * J) / J
        let tapes = (0..<L).map { _ in BlockTape() }
        for l in 0..<L {
            block(l).forward(x.pointer, rows: T, positions: positions, rotaryRows: rotaryRows,
                             keys: cache.keys(layer: l), values: cache.values(layer: l), writeCache: true, tape: tapes[l])
        }

        // Loss on the answer positions p_m = X − 1 + m, and dL/dlogits = (softmax − e_y) / Y.
        let first = X - 1
        let normed = FloatBuffer(count: Y * D), stats = FloatBuffer(count: 2 * Y), logits = FloatBuffer(count: Y * V)
        head(x.pointer + first * D, rows: Y, normed: normed.pointer, stats: stats.pointer, into: logits.pointer)
        var loss = 0.0
        for m in 0..<Y {
            let row = logits.pointer + m * V
            var mx = -Float.infinity
            for i in 0..<V { mx = max(mx, row[i]) }
            var z = 0.0
            for i in 0..<V { z += Double(expf(row[i] - mx)) }
            loss -= Double(row[answer[m]] - mx) - Foundation.log(z)
            let scale = 1 / (z * Double(Y))
            for i in 0..<V { row[i] = Float(Double(expf(row[i] - mx)) * scale) }
            row[answer[m]] -= Float(1 / Double(Y))
        }
        loss /= Double(Y)
        let dx = FloatBuffer(count: T * D)
        headBackward(logits.pointer, h: x.pointer + first * D, stats: stats.pointer, rows: Y, scratch: normed.pointer,
                     into: dx.pointer + first * D)

        // Backward, top down; each chosen neuron's slice gradients from its layer's FFN view.
        let N = slices.neurons.count
        let hasInBias = blocks.first?.ffnIn.bias != nil, gated = blocks.first?.ffnUp != nil
        let hasUpBias = blocks.first?.ffnUp?.bias != nil
        var out = SliceGradient(loss: loss, inWeight: [Double](repeating: 0, count: N * D),
                                inBias: hasInBias ? [Double](repeating: 0, count: N) : nil,
                                upWeight: slices.upAndDown && gated ? [Double](repeating: 0, count: N * D) : nil,
                                upBias: slices.upAndDown && hasUpBias ? [Double](repeating: 0, count: N) : nil,
                                outWeight: slices.upAndDown ? [Double](repeating: 0, count: N * D) : nil)
        guard N > 0 else { return out }
        let grads = BlockGradients()
        for l in stride(from: L - 1, through: lowest, by: -1) {
            let chosen = slices.neurons.enumerated().filter { $0.element / J == l }.map { (k: $0.offset, j: $0.element % J) }
            block(l).backward(dx.pointer, rows: T, rotaryRows: rotaryRows, keys: cache.keys(layer: l), values: cache.values(layer: l),
                              tape: tapes[l], grads: grads, wholeSequence: true,
                              ffnGradients: chosen.isEmpty ? nil : { v in Self.accumulate(v, chosen: chosen, rows: T, width: D, ffnWidth: J, into: &out) })
        }
        return out
    }

    /// Σ over positions of the slice gradients of `chosen` (their index k in the output, neuron j;
    /// the k of one layer are consecutive, the neurons being sorted): for the layer's n neurons
    ///   dW_in[k0..<k0+n] += Gᵀ·B   with G[t, c] = dω[t, j_c], B = b [T, D];  db_in = Σ_t G
    /// the same with du for W_up, and dW_out[:, j_c] (stored as rows) += Hᵀ·dDown with
    /// H[t, c] = h[t, j_c]. In Double (dgemm on the float32 values widened), so a dense arm
    /// (every neuron but the located) costs a few matrix products, not a scalar loop per neuron.
    static func accumulate(_ v: DecoderBlock.FFNGradientView, chosen: [(k: Int, j: Int)], rows T: Int, width D: Int, ffnWidth J: Int,
                           into out: inout SliceGradient) {
        guard let k0 = chosen.first?.k else { return }
        let n = chosen.count
        precondition(chosen.last!.k == k0 + n - 1, "internal: a layer's chosen neurons are not consecutive in the slice order")
        func gather(_ src: UnsafePointer<Float>) -> [Double] {
            var g = [Double](repeating: 0, count: T * n)
            for t in 0..<T { for (c, x) in chosen.enumerated() { g[t * n + c] = Double(src[t * J + x.j]) } }
            return g
        }
        func widen(_ src: UnsafePointer<Float>) -> [Double] { (0..<(T * D)).map { Double(src[$0]) } }
        /// rows[k0 ..< k0 + n] += aᵀ·b, a [T, n], b [T, D].
        func addProduct(_ a: [Double], _ b: [Double], into rows: inout [Double]) {
            rows.withUnsafeMutableBufferPointer { r in
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(n), Int32(D), Int32(T), 1, a, Int32(n), b, Int32(D),
                            1, r.baseAddress! + k0 * D, Int32(D))
            }
        }
        func addColumnSums(_ a: [Double], into biases: inout [Double]?) {
            guard biases != nil else { return }
            for c in 0..<n { var s = 0.0; for t in 0..<T { s += a[t * n + c] }; biases![k0 + c] += s }
        }
        let input = widen(v.input)
        let dOmega = gather(v.dOmega)
        addProduct(dOmega, input, into: &out.inWeight)
        addColumnSums(dOmega, into: &out.inBias)
        if out.upWeight != nil, let dUp = v.dUp {
            let g = gather(dUp)
            addProduct(g, input, into: &out.upWeight!)
            addColumnSums(g, into: &out.upBias)
        }
        if out.outWeight != nil {
            addProduct(gather(v.hidden), widen(v.dDown), into: &out.outWeight!)
        }
    }
}
