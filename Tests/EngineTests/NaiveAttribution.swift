// The deliberately naive Eq. 7 path: full-sequence recomputation for every (m, l, n), no cache,
// no rows, its own full causal attention forward and backward through every position.
import Engine
import Foundation

/// Recomputes z_m = x ⊕ y_{<m} from scratch for each point n with ω_l[p_m] := (n/S)·ω̄_l, runs
/// the whole sequence through every layer, takes P at p_m, and back-propagates through all T
/// positions (attention included) down to layer l. Shares only the primitive ops (Linear,
/// norms, rotary, activations) with the fast path; nothing of its batching, cache or tapes.
enum NaiveAttribution {
    /// attr_m(l, ·) [J] with the paper's 1/S weights, P_m(1), and ω̄_l[p_m].
    static func attribution(model: TransformerModel, prompt: [Int], answer: [Int], m: Int, layer l: Int, steps S: Int = 19) -> (attr: [Double], pClean: Double, omegaBar: [Float]) {
        let d = model.dimensions
        let J = d.ffnWidth
        let z = Array((prompt + answer).prefix(prompt.count + m))
        var sum = [Double](repeating: 0, count: J)
        var clean = [Float](repeating: 0, count: J)
        var pClean = 0.0
        for n in 0...S {
            let (prob, grad, omegaBar) = probabilityAndGradient(model: model, tokens: z, target: answer[m], layer: l, alpha: Float(n) / Float(S))
            if n == S { pClean = prob; clean = omegaBar }
            for j in 0..<J { sum[j] += Double(grad[j]) / Double(S) }
        }
        return ((0..<J).map { Double(clean[$0]) * sum[$0] }, pClean, clean)
    }

    struct Layer {
        var x: [Float] = [], s1: [Float] = [], a: [Float] = [], q: [Float] = [], k: [Float] = [], v: [Float] = []
        var probs: [Float] = [], att: [Float] = [], r: [Float] = [], s2: [Float] = [], b: [Float] = []
        var omega: [Float] = [], up: [Float] = []
    }

    /// P = softmax(logits[p])[target] with ω_layer[p] scaled by α, ∂P/∂ω_layer[p] [J], and the
    /// unscaled ω̄_layer[p].
    static func probabilityAndGradient(model: TransformerModel, tokens: [Int], target: Int, layer: Int, alpha: Float) -> (Double, [Float], [Float]) {
        let d = model.dimensions
        let (T, D, J, V, H, G, E) = (tokens.count, d.width, d.ffnWidth, d.vocabulary, d.heads, d.kvHeads, d.headDim)
        let p = T - 1
        let positions = Array(0..<T)
        let rot = RotaryRows(model, positions: positions)
        var x = [Float](repeating: 0, count: T * D)
        x.withUnsafeMutableBufferPointer { model.embed(tokens, positions: positions, into: $0.baseAddress!) }
        var saved: [Layer] = []
        var omegaBar = [Float](repeating: 0, count: J)
        // MARK: forward, every position
        for (k, blk) in model.blocks.enumerated() {
            var L = Layer()
            let QW = blk.q.outFeatures, KW = blk.k.outFeatures
            L.x = x
            L.s1 = [Float](repeating: 0, count: 2 * T); L.a = [Float](repeating: 0, count: T * D)
            blk.inputNorm.forward(x, rows: T, into: &L.a, stats: &L.s1)
            L.q = [Float](repeating: 0, count: T * QW); L.k = [Float](repeating: 0, count: T * KW); L.v = [Float](repeating: 0, count: T * KW)
            blk.q.forward(L.a, rows: T, into: &L.q); blk.k.forward(L.a, rows: T, into: &L.k); blk.v.forward(L.a, rows: T, into: &L.v)
            if let r = blk.rotary {
                for t in 0..<T {
                    L.q.withUnsafeMutableBufferPointer { qb in rot.cos.withUnsafeBufferPointer { c in rot.sin.withUnsafeBufferPointer { s in
                        r.apply(qb.baseAddress! + t * QW, heads: H, cos: c.baseAddress! + t * rot.half, sin: s.baseAddress! + t * rot.half) } } }
                    L.k.withUnsafeMutableBufferPointer { kb in rot.cos.withUnsafeBufferPointer { c in rot.sin.withUnsafeBufferPointer { s in
                        r.apply(kb.baseAddress! + t * KW, heads: G, cos: c.baseAddress! + t * rot.half, sin: s.baseAddress! + t * rot.half) } } }
                }
            }
            // Full causal attention in Double accumulation: probs [T, H, T] (zeros above t).
            L.probs = [Float](repeating: 0, count: T * H * T); L.att = [Float](repeating: 0, count: T * QW)
            for t in 0..<T { for h in 0..<H {
                let g = h / (H / G)
                var sc = [Double](repeating: 0, count: t + 1)
                for s in 0...t { var dot = 0.0; for e in 0..<E { dot += Double(L.q[t * QW + h * E + e]) * Double(L.k[s * KW + g * E + e]) }; sc[s] = dot * Double(blk.attention.scale) }
                let mx = sc.max()!; var z = 0.0
                for s in 0...t { sc[s] = exp(sc[s] - mx); z += sc[s] }
                for s in 0...t {
                    let w = sc[s] / z
                    L.probs[(t * H + h) * T + s] = Float(w)
                    for e in 0..<E { L.att[t * QW + h * E + e] += Float(w) * L.v[s * KW + g * E + e] }
                }
            } }
            L.r = x
            blk.o.forwardAccumulate(L.att, rows: T, into: &L.r)
            if let post = blk.postAttentionNorm {
                L.s2 = [Float](repeating: 0, count: 2 * T); L.b = [Float](repeating: 0, count: T * D)
                post.forward(L.r, rows: T, into: &L.b, stats: &L.s2)
            } else {
                L.b = L.a
            }
            L.omega = [Float](repeating: 0, count: T * J)
            blk.ffnIn.forward(L.b, rows: T, into: &L.omega)
            if k == layer {
                for j in 0..<J { omegaBar[j] = L.omega[p * J + j]; L.omega[p * J + j] *= alpha }
            }
            var h = [Float](repeating: 0, count: T * J)
            if let up = blk.ffnUp {
                L.up = [Float](repeating: 0, count: T * J)
                up.forward(L.b, rows: T, into: &L.up)
                for i in 0..<(T * J) { h[i] = blk.activation.apply(L.omega[i]) * L.up[i] }
            } else {
                for i in 0..<(T * J) { h[i] = blk.activation.apply(L.omega[i]) }
            }
            x = L.r
            blk.ffnDown.forwardAccumulate(h, rows: T, into: &x)
            saved.append(L)
        }
        // MARK: head at p, softmax in Double
        var normed = [Float](repeating: 0, count: T * D), fs = [Float](repeating: 0, count: 2 * T)
        model.finalNorm.forward(x, rows: T, into: &normed, stats: &fs)
        var logits = [Float](repeating: 0, count: V)
        normed.withUnsafeBufferPointer { model.lmHead.forward($0.baseAddress! + p * D, rows: 1, into: &logits) }
        let mx = Double(logits.max()!)
        var e = logits.map { exp(Double($0) - mx) }
        let z = e.reduce(0, +)
        e = e.map { $0 / z }
        let prob = e[target]
        var dLogits = e.map { Float(-prob * $0) }
        dLogits[target] += Float(prob)
        // MARK: backward through every position
        var dNormed = [Float](repeating: 0, count: T * D)
        dNormed.withUnsafeMutableBufferPointer { model.lmHead.backwardInput(dLogits, rows: 1, into: $0.baseAddress! + p * D) }
        var dx = [Float](repeating: 0, count: T * D)
        model.finalNorm.backward(dNormed, x: x, stats: fs, rows: T, into: &dx, accumulate: false)
        for k in stride(from: model.blocks.count - 1, through: layer, by: -1) {
            let blk = model.blocks[k], L = saved[k]
            let QW = blk.q.outFeatures, KW = blk.k.outFeatures
            var dh = [Float](repeating: 0, count: T * J)
            blk.ffnDown.backwardInput(dx, rows: T, into: &dh)
            var dOmega = [Float](repeating: 0, count: T * J), dUp = [Float](repeating: 0, count: T * J)
            for i in 0..<(T * J) {
                if blk.ffnUp != nil {
                    dOmega[i] = dh[i] * L.up[i] * blk.activation.derivative(L.omega[i])
                    dUp[i] = dh[i] * blk.activation.apply(L.omega[i])
                } else {
                    dOmega[i] = dh[i] * blk.activation.derivative(L.omega[i])
                }
            }
            if k == layer { return (prob, Array(dOmega[(p * J)..<((p + 1) * J)]), omegaBar) }
            var db = [Float](repeating: 0, count: T * D)
            blk.ffnIn.backwardInput(dOmega, rows: T, into: &db)
            if let up = blk.ffnUp { up.backwardInput(dUp, rows: T, into: &db, accumulate: true) }
            var dr = dx
            if let post = blk.postAttentionNorm { post.backward(db, x: L.r, stats: L.s2, rows: T, into: &dr, accumulate: true) }
            var dAtt = [Float](repeating: 0, count: T * QW)
            blk.o.backwardInput(dr, rows: T, into: &dAtt)
            // Attention backward through all positions: dq_t, and dk_s, dv_s summed over t ≥ s.
            var dq = [Float](repeating: 0, count: T * QW), dk = [Float](repeating: 0, count: T * KW), dv = [Float](repeating: 0, count: T * KW)
            for t in 0..<T { for h in 0..<H {
                let g = h / (H / G)
                var dP = [Double](repeating: 0, count: t + 1)
                for s in 0...t { var dot = 0.0; for e in 0..<E { dot += Double(dAtt[t * QW + h * E + e]) * Double(L.v[s * KW + g * E + e]) }; dP[s] = dot }
                var inner = 0.0
                for s in 0...t { inner += Double(L.probs[(t * H + h) * T + s]) * dP[s] }
                for s in 0...t {
                    let P = Double(L.probs[(t * H + h) * T + s])
                    let dS = P * (dP[s] - inner) * Double(blk.attention.scale)
                    for e in 0..<E {
                        dv[s * KW + g * E + e] += Float(P) * dAtt[t * QW + h * E + e]
                        dq[t * QW + h * E + e] += Float(dS) * L.k[s * KW + g * E + e]
                        dk[s * KW + g * E + e] += Float(dS) * L.q[t * QW + h * E + e]
                    }
                }
            } }
            if let r = blk.rotary {
                for t in 0..<T {
                    dq.withUnsafeMutableBufferPointer { qb in rot.cos.withUnsafeBufferPointer { c in rot.sin.withUnsafeBufferPointer { s in
                        r.apply(qb.baseAddress! + t * QW, heads: H, cos: c.baseAddress! + t * rot.half, sin: s.baseAddress! + t * rot.half, inverse: true) } } }
                    dk.withUnsafeMutableBufferPointer { kb in rot.cos.withUnsafeBufferPointer { c in rot.sin.withUnsafeBufferPointer { s in
                        r.apply(kb.baseAddress! + t * KW, heads: G, cos: c.baseAddress! + t * rot.half, sin: s.baseAddress! + t * rot.half, inverse: true) } } }
                }
            }
            var da = [Float](repeating: 0, count: T * D)
            blk.q.backwardInput(dq, rows: T, into: &da)
            blk.k.backwardInput(dk, rows: T, into: &da, accumulate: true)
            blk.v.backwardInput(dv, rows: T, into: &da, accumulate: true)
            if blk.postAttentionNorm == nil { for i in 0..<(T * D) { da[i] += db[i] } }
            dx = dr
            blk.inputNorm.backward(da, x: L.x, stats: L.s1, rows: T, into: &dx, accumulate: true)
        }
        return (prob, [], omegaBar)
    }
}
