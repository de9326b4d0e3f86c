// GPT-J: one LayerNorm feeding attention and FFN in parallel, interleaved rotary on rotary_dim.
import Foundation

// MARK: - Configuration (keys of HF config.json)

public struct GPTJConfig: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var nPositions: Int
    public var nEmbd: Int
    public var nLayer: Int
    public var nHead: Int
    public var rotaryDim: Int?
    public var nInner: Int?
    public var activationFunction: String
    public var layerNormEpsilon: Double
    public var tieWordEmbeddings: Bool

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", nPositions = "n_positions", nEmbd = "n_embd", nLayer = "n_layer"
        case nHead = "n_head", rotaryDim = "rotary_dim", nInner = "n_inner"
        case activationFunction = "activation_function", layerNormEpsilon = "layer_norm_epsilon"
        case tieWordEmbeddings = "tie_word_embeddings"
    }

    /// Defaults as GPTJConfig in transformers.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 50400
        nPositions = try c.decodeIfPresent(Int.self, forKey: .nPositions) ?? 2048
        nEmbd = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? 4096
        nLayer = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? 28
        nHead = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? 16
        rotaryDim = try c.decodeIfPresent(Int.self, forKey: .rotaryDim) ?? 64
        nInner = try c.decodeIfPresent(Int.self, forKey: .nInner)
        activationFunction = try c.decodeIfPresent(String.self, forKey: .activationFunction) ?? "gelu_new"
        layerNormEpsilon = try c.decodeIfPresent(Double.self, forKey: .layerNormEpsilon) ?? 1e-5
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize); try c.encode(nPositions, forKey: .nPositions)
        try c.encode(nEmbd, forKey: .nEmbd); try c.encode(nLayer, forKey: .nLayer); try c.encode(nHead, forKey: .nHead)
        try c.encodeIfPresent(rotaryDim, forKey: .rotaryDim); try c.encodeIfPresent(nInner, forKey: .nInner)
        try c.encode(activationFunction, forKey: .activationFunction); try c.encode(layerNormEpsilon, forKey: .layerNormEpsilon)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
    }

    public var innerSize: Int { nInner ?? 4 * nEmbd }
    public var headDim: Int { nEmbd / nHead }
    /// HF: rotary_dim None means the whole head.
    public var rotaryDimension: Int { rotaryDim ?? headDim }

    func validate(path: String) throws {
        for (k, v) in [("vocab_size", vocabSize), ("n_positions", nPositions), ("n_embd", nEmbd), ("n_layer", nLayer),
                       ("n_head", nHead), ("n_inner", innerSize)] where v <= 0 {
            throw ModelError.badConfig(path: path, key: k, detail: "must be positive, found \(v)")
        }
        guard nEmbd % nHead == 0 else { throw ModelError.badConfig(path: path, key: "n_head", detail: "(\(nHead)) must divide n_embd (\(nEmbd))") }
        guard rotaryDimension > 0, rotaryDimension % 2 == 0, rotaryDimension <= headDim else {
            throw ModelError.badConfig(path: path, key: "rotary_dim", detail: "must be even and at most the head dim \(headDim), found \(rotaryDimension)")
        }
        guard Activation(hfName: activationFunction) != nil else {
            throw ModelError.unsupported(path: path, key: "activation_function", value: activationFunction, supported: "gelu_new, gelu, gelu_pytorch_tanh, relu, silu")
        }
    }
}

// MARK: - The model

public final class GPTJModel: CausalLanguageModel {
    public let modelType = "gptj"
    public let config: GPTJConfig
    public let dimensions: ModelDimensions
    public let parameters: ParameterStore
    public var tiedEmbeddings: Bool { config.tieWordEmbeddings }
    let rotary: RotaryEmbedding
    let rotaryTables = RotaryTableCache()
    let activation: Activation
    let layers: [Layer]
    let tokenEmbedding: UnsafeMutablePointer<Float>   // wte [V, D]
    let finalNorm: LayerNorm
    let lmHead: Linear                                // [V, D] with bias [V]

    struct Layer {
        let ln1: LayerNorm
        let q, k, v, out: Linear       // [D, D], no biases
        let fcIn: Linear               // mlp.fc_in [J, D]: its output is ω
        let fcOut: Linear              // mlp.fc_out [D, J]
        let attention: CausalAttention
    }

    public static func parameterSpecs(_ c: GPTJConfig) -> [ParameterSpec] {
        let (d, j) = (c.nEmbd, c.innerSize)
        var s = [ParameterSpec("transformer.wte.weight", [c.vocabSize, d])]
        for l in 0..<c.nLayer {
            let p = "transformer.h.\(l)."
            s += [ParameterSpec(p + "ln_1.weight", [d]), ParameterSpec(p + "ln_1.bias", [d]),
                  ParameterSpec(p + "attn.q_proj.weight", [d, d]), ParameterSpec(p + "attn.k_proj.weight", [d, d]),
                  ParameterSpec(p + "attn.v_proj.weight", [d, d]), ParameterSpec(p + "attn.out_proj.weight", [d, d]),
                  ParameterSpec(p + "mlp.fc_in.weight", [j, d]), ParameterSpec(p + "mlp.fc_in.bias", [j]),
                  ParameterSpec(p + "mlp.fc_out.weight", [d, j]), ParameterSpec(p + "mlp.fc_out.bias", [d])]
        }
        s += [ParameterSpec("transformer.ln_f.weight", [d]), ParameterSpec("transformer.ln_f.bias", [d])]
        if !c.tieWordEmbeddings { s.append(ParameterSpec("lm_head.weight", [c.vocabSize, d])) }
        s.append(ParameterSpec("lm_head.bias", [c.vocabSize]))
        return s
    }

    public convenience init(hf source: HFDirectory) throws {
        let config: GPTJConfig
        do { config = try JSONDecoder().decode(GPTJConfig.self, from: source.configData) } catch {
            throw ModelError.badConfig(path: source.path + "/config.json", key: "(file)", detail: "does not decode as a GPT-J config: \(error)")
        }
        try self.init(config: config, path: source.path)
        let map = Dictionary(uniqueKeysWithValues: parameters.specs.map { ($0.name, ParameterSource($0.name)) })
        try parameters.load(from: source, keyMap: map) { name in
            name.hasSuffix("attn.bias") || name.hasSuffix("attn.masked_bias") || name.hasSuffix("embed_positions")
                || (config.tieWordEmbeddings && name == "lm_head.weight")
        }
    }

    public init(config: GPTJConfig, path: String) throws {
        try config.validate(path: path)
        self.config = config
        let c = config
        let (d, j, hd) = (c.nEmbd, c.innerSize, c.headDim)
        dimensions = ModelDimensions(layers: c.nLayer, width: d, ffnWidth: j, heads: c.nHead, kvHeads: c.nHead,
                                     headDim: hd, vocabulary: c.vocabSize, contextLength: c.nPositions)
        let store = ParameterStore(specs: Self.parameterSpecs(c))
        parameters = store
        rotary = RotaryEmbedding(layout: .interleaved, rotaryDim: c.rotaryDimension, headDim: hd, base: 10000)
        activation = Activation(hfName: c.activationFunction)!
        let eps = Float(c.layerNormEpsilon)
        layers = (0..<c.nLayer).map { l in
            let p = "transformer.h.\(l)."
            func lin(_ n: String, _ o: Int, _ i: Int) -> Linear {
                Linear(weight: store.pointer(p + n + ".weight"), bias: store.optionalPointer(p + n + ".bias"), out: o, in: i)
            }
            return Layer(ln1: LayerNorm(weight: store.pointer(p + "ln_1.weight"), bias: store.pointer(p + "ln_1.bias"), width: d, eps: eps),
                         q: lin("attn.q_proj", d, d), k: lin("attn.k_proj", d, d), v: lin("attn.v_proj", d, d),
                         out: lin("attn.out_proj", d, d), fcIn: lin("mlp.fc_in", j, d), fcOut: lin("mlp.fc_out", d, j),
                         attention: CausalAttention(heads: c.nHead, kvHeads: c.nHead, headDim: hd, scale: 1 / Float(hd).squareRoot()))
        }
        tokenEmbedding = store.pointer("transformer.wte.weight")
        finalNorm = LayerNorm(weight: store.pointer("transformer.ln_f.weight"), bias: store.pointer("transformer.ln_f.bias"), width: d, eps: eps)
        lmHead = Linear(weight: c.tieWordEmbeddings ? tokenEmbedding : store.pointer("lm_head.weight"),
                        bias: store.pointer("lm_head.bias"), out: c.vocabSize, in: d)
    }

    // MARK: Forward

    public func embed(_ tokens: [Int], positions: [Int], into x: UnsafeMutablePointer<Float>) {
        let d = dimensions.width
        for (t, tok) in tokens.enumerated() { (x + t * d).update(from: tokenEmbedding + tok * d, count: d) }
    }

    /// x ← x + out(attn(ln₁(x))) + fc_out(act(fc_in(ln₁(x)))): both branches read the same LN.
    public func block(_ layer: Int, x: UnsafeMutablePointer<Float>, positions: [Int], cache: KVCache) {
        let L = layers[layer]
        let t = positions.count
        let (d, j) = (dimensions.width, dimensions.ffnWidth)
        let start = cache.count
        let (cos, sin) = rotaryTables.table(rotary, positions: positions)
        var a = [Float](repeating: 0, count: t * d)
        var q = [Float](repeating: 0, count: t * d)
        var attn = [Float](repeating: 0, count: t * d)
        var omega = [Float](repeating: 0, count: t * j)          // ω [T, J]: fc_in output
        a.withUnsafeMutableBufferPointer { a in
        q.withUnsafeMutableBufferPointer { q in
        attn.withUnsafeMutableBufferPointer { o in
        omega.withUnsafeMutableBufferPointer { w in
            let a = a.baseAddress!, q = q.baseAddress!, o = o.baseAddress!, w = w.baseAddress!
            L.ln1.forward(x, rows: t, into: a)
            L.q.forward(a, rows: t, into: q)
            let kc = cache.keys(layer: layer) + start * d, vc = cache.values(layer: layer) + start * d
            L.k.forward(a, rows: t, into: kc)
            L.v.forward(a, rows: t, into: vc)
            cos.withUnsafeBufferPointer { cb in sin.withUnsafeBufferPointer { sb in
                let half = rotary.rotaryDim / 2
                for r in 0..<t {
                    rotary.apply(q + r * d, heads: dimensions.heads, cos: cb.baseAddress! + r * half, sin: sb.baseAddress! + r * half)
                    rotary.apply(kc + r * d, heads: dimensions.heads, cos: cb.baseAddress! + r * half, sin: sb.baseAddress! + r * half)
                }
            } }
            L.attention.forward(q: q, ownK: kc, ownV: vc, rows: t, visible: (0..<t).map { start + $0 },
                                keys: cache.keys(layer: layer), values: cache.values(layer: layer), into: o)
            L.fcIn.forward(a, rows: t, into: w)
            activation.forward(w, count: t * j, into: w)
            L.out.forwardAccumulate(o, rows: t, into: x)
            L.fcOut.forwardAccumulate(w, rows: t, into: x)
        } } } }
    }

    public func head(_ h: UnsafePointer<Float>, rows: Int, into logits: UnsafeMutablePointer<Float>) {
        var n = [Float](repeating: 0, count: rows * dimensions.width)
        n.withUnsafeMutableBufferPointer { nb in
            finalNorm.forward(h, rows: rows, into: nb.baseAddress!)
            lmHead.forward(nb.baseAddress!, rows: rows, into: logits)
        }
    }
}
