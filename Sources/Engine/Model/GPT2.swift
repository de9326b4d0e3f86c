// GPT-2: learned positions, LayerNorm, fused qkv attention (Conv1D weights), gelu_new FFN.
import Foundation

// MARK: - Configuration (keys of HF config.json)

public struct GPT2Config: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var nPositions: Int
    public var nEmbd: Int
    public var nLayer: Int
    public var nHead: Int
    public var nInner: Int?
    public var activationFunction: String
    public var layerNormEpsilon: Double
    public var scaleAttnWeights: Bool
    public var scaleAttnByInverseLayerIdx: Bool
    public var tieWordEmbeddings: Bool

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", nPositions = "n_positions", nEmbd = "n_embd", nLayer = "n_layer"
        case nHead = "n_head", nInner = "n_inner", activationFunction = "activation_function"
        case layerNormEpsilon = "layer_norm_epsilon", scaleAttnWeights = "scale_attn_weights"
        case scaleAttnByInverseLayerIdx = "scale_attn_by_inverse_layer_idx", tieWordEmbeddings = "tie_word_embeddings"
        case reorderAndUpcastAttn = "reorder_and_upcast_attn"
    }

    /// Defaults as GPT2Config in transformers.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 50257
        nPositions = try c.decodeIfPresent(Int.self, forKey: .nPositions) ?? 1024
        nEmbd = try c.decodeIfPresent(Int.self, forKey: .nEmbd) ?? 768
        nLayer = try c.decodeIfPresent(Int.self, forKey: .nLayer) ?? 12
        nHead = try c.decodeIfPresent(Int.self, forKey: .nHead) ?? 12
        nInner = try c.decodeIfPresent(Int.self, forKey: .nInner)
        activationFunction = try c.decodeIfPresent(String.self, forKey: .activationFunction) ?? "gelu_new"
        layerNormEpsilon = try c.decodeIfPresent(Double.self, forKey: .layerNormEpsilon) ?? 1e-5
        scaleAttnWeights = try c.decodeIfPresent(Bool.self, forKey: .scaleAttnWeights) ?? true
        scaleAttnByInverseLayerIdx = try c.decodeIfPresent(Bool.self, forKey: .scaleAttnByInverseLayerIdx) ?? false
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        // reorder_and_upcast_attn only changes float16 rounding; in float32 it is the same math.
        _ = try c.decodeIfPresent(Bool.self, forKey: .reorderAndUpcastAttn)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize); try c.encode(nPositions, forKey: .nPositions)
        try c.encode(nEmbd, forKey: .nEmbd); try c.encode(nLayer, forKey: .nLayer); try c.encode(nHead, forKey: .nHead)
        try c.encodeIfPresent(nInner, forKey: .nInner); try c.encode(activationFunction, forKey: .activationFunction)
        try c.encode(layerNormEpsilon, forKey: .layerNormEpsilon); try c.encode(scaleAttnWeights, forKey: .scaleAttnWeights)
        try c.encode(scaleAttnByInverseLayerIdx, forKey: .scaleAttnByInverseLayerIdx)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
    }

    public var innerSize: Int { nInner ?? 4 * nEmbd }

    func validate(path: String) throws {
        for (k, v) in [("vocab_size", vocabSize), ("n_positions", nPositions), ("n_embd", nEmbd), ("n_layer", nLayer),
                       ("n_head", nHead), ("n_inner", innerSize)] where v <= 0 {
            throw ModelError.badConfig(path: path, key: k, detail: "must be positive, found \(v)")
        }
        guard nEmbd % nHead == 0 else { throw ModelError.badConfig(path: path, key: "n_head", detail: "(\(nHead)) must divide n_embd (\(nEmbd))") }
        guard Activation(hfName: activationFunction) != nil else {
            throw ModelError.unsupported(path: path, key: "activation_function", value: activationFunction, supported: "gelu_new, gelu, gelu_pytorch_tanh, relu, silu")
        }
    }
}

// MARK: - The model

public final class GPT2Model: CausalLanguageModel {
    public let modelType = "gpt2"
    public let config: GPT2Config
    public let dimensions: ModelDimensions
    public let parameters: ParameterStore
    public var tiedEmbeddings: Bool { config.tieWordEmbeddings }
    let activation: Activation
    let layers: [Layer]
    let tokenEmbedding: UnsafeMutablePointer<Float>       // wte [V, D]
    let positionEmbedding: UnsafeMutablePointer<Float>    // wpe [T max, D]
    let finalNorm: LayerNorm
    let lmHead: Linear                                    // [V, D]

    struct Layer {
        let ln1: LayerNorm
        let qkv: Linear            // c_attn as [3D, D]
        let proj: Linear           // attn.c_proj [D, D]
        let ln2: LayerNorm
        let fc: Linear             // mlp.c_fc [J, D]: its output is ω
        let fcProj: Linear         // mlp.c_proj [D, J]
        let attention: CausalAttention
    }

    /// Canonical names (HF GPT2LMHeadModel); Conv1D weights are held as [out, in].
    public static func parameterSpecs(_ c: GPT2Config) -> [ParameterSpec] {
        let (d, j) = (c.nEmbd, c.innerSize)
        var s = [ParameterSpec("transformer.wte.weight", [c.vocabSize, d]), ParameterSpec("transformer.wpe.weight", [c.nPositions, d])]
        for l in 0..<c.nLayer {
            let p = "transformer.h.\(l)."
            s += [ParameterSpec(p + "ln_1.weight", [d]), ParameterSpec(p + "ln_1.bias", [d]),
                  ParameterSpec(p + "attn.c_attn.weight", [3 * d, d]), ParameterSpec(p + "attn.c_attn.bias", [3 * d]),
                  ParameterSpec(p + "attn.c_proj.weight", [d, d]), ParameterSpec(p + "attn.c_proj.bias", [d]),
                  ParameterSpec(p + "ln_2.weight", [d]), ParameterSpec(p + "ln_2.bias", [d]),
                  ParameterSpec(p + "mlp.c_fc.weight", [j, d]), ParameterSpec(p + "mlp.c_fc.bias", [j]),
                  ParameterSpec(p + "mlp.c_proj.weight", [d, j]), ParameterSpec(p + "mlp.c_proj.bias", [d])]
        }
        s += [ParameterSpec("transformer.ln_f.weight", [d]), ParameterSpec("transformer.ln_f.bias", [d])]
        if !c.tieWordEmbeddings { s.append(ParameterSpec("lm_head.weight", [c.vocabSize, d])) }
        return s
    }

    /// HF names; checkpoints saved from GPT2Model (OpenAI's originals) lack "transformer.".
    static func hfKeyMap(_ specs: [ParameterSpec], source: TensorSource) -> [String: ParameterSource] {
        let prefixed = source.tensors["transformer.wte.weight"] != nil
        return Dictionary(uniqueKeysWithValues: specs.map { spec in
            let stored = (!prefixed && spec.name.hasPrefix("transformer.")) ? String(spec.name.dropFirst("transformer.".count)) : spec.name
            let isConv1D = spec.name.hasSuffix("c_attn.weight") || spec.name.hasSuffix("c_proj.weight") || spec.name.hasSuffix("c_fc.weight")
            return (spec.name, ParameterSource(stored, isConv1D ? .transpose : .none))
        })
    }

    public convenience init(hf source: HFDirectory) throws {
        let config: GPT2Config
        do { config = try JSONDecoder().decode(GPT2Config.self, from: source.configData) } catch {
            throw ModelError.badConfig(path: source.path + "/config.json", key: "(file)", detail: "does not decode as a GPT-2 config: \(error)")
        }
        try self.init(config: config, path: source.path)
        try parameters.load(from: source, keyMap: Self.hfKeyMap(parameters.specs, source: source)) { name in
            // Causal-mask buffers of old checkpoints; the tied head is the embedding.
            name.hasSuffix("attn.bias") && !name.hasSuffix("c_attn.bias") || name.hasSuffix("attn.masked_bias")
                || (config.tieWordEmbeddings && name == "lm_head.weight")
        }
    }

    public init(config: GPT2Config, path: String) throws {
        try config.validate(path: path)
        self.config = config
        let c = config
        let (d, j, hd) = (c.nEmbd, c.innerSize, c.nEmbd / c.nHead)
        dimensions = ModelDimensions(layers: c.nLayer, width: d, ffnWidth: j, heads: c.nHead, kvHeads: c.nHead,
                                     headDim: hd, vocabulary: c.vocabSize, contextLength: c.nPositions)
        let store = ParameterStore(specs: Self.parameterSpecs(c))
        parameters = store
        activation = Activation(hfName: c.activationFunction)!
        let eps = Float(c.layerNormEpsilon)
        layers = (0..<c.nLayer).map { l in
            let p = "transformer.h.\(l)."
            func lin(_ n: String, _ o: Int, _ i: Int) -> Linear {
                Linear(weight: store.pointer(p + n + ".weight"), bias: store.pointer(p + n + ".bias"), out: o, in: i)
            }
            func ln(_ n: String) -> LayerNorm {
                LayerNorm(weight: store.pointer(p + n + ".weight"), bias: store.pointer(p + n + ".bias"), width: d, eps: eps)
            }
            // HF: scores / sqrt(E) if scale_attn_weights, then / (layer + 1) if scaled by layer.
            var scale: Float = c.scaleAttnWeights ? 1 / Float(hd).squareRoot() : 1
            if c.scaleAttnByInverseLayerIdx { scale /= Float(l + 1) }
            return Layer(ln1: ln("ln_1"), qkv: lin("attn.c_attn", 3 * d, d), proj: lin("attn.c_proj", d, d),
                         ln2: ln("ln_2"), fc: lin("mlp.c_fc", j, d), fcProj: lin("mlp.c_proj", d, j),
                         attention: CausalAttention(heads: c.nHead, kvHeads: c.nHead, headDim: hd, scale: scale))
        }
        tokenEmbedding = store.pointer("transformer.wte.weight")
        positionEmbedding = store.pointer("transformer.wpe.weight")
        finalNorm = LayerNorm(weight: store.pointer("transformer.ln_f.weight"), bias: store.pointer("transformer.ln_f.bias"), width: d, eps: eps)
        lmHead = Linear(weight: c.tieWordEmbeddings ? tokenEmbedding : store.pointer("lm_head.weight"), bias: nil, out: c.vocabSize, in: d)
    }

    // MARK: Forward

    public func embed(_ tokens: [Int], positions: [Int], into x: UnsafeMutablePointer<Float>) {
        let d = dimensions.width
        for (t, tok) in tokens.enumerated() {
            let row = x + t * d, te = tokenEmbedding + tok * d, pe = positionEmbedding + positions[t] * d
            for i in 0..<d { row[i] = te[i] + pe[i] }
        }
    }

    public func block(_ layer: Int, x: UnsafeMutablePointer<Float>, positions: [Int], cache: KVCache) {
        let L = layers[layer]
        let t = positions.count
        let (d, j) = (dimensions.width, dimensions.ffnWidth)
        let start = cache.count
        var a = [Float](repeating: 0, count: t * d)
        var qkv = [Float](repeating: 0, count: t * 3 * d)
        var omega = [Float](repeating: 0, count: t * j)          // ω [T, J]: c_fc output
        var q = [Float](repeating: 0, count: t * d)
        a.withUnsafeMutableBufferPointer { a in
        qkv.withUnsafeMutableBufferPointer { qkv in
        q.withUnsafeMutableBufferPointer { q in
        omega.withUnsafeMutableBufferPointer { w in
            let a = a.baseAddress!, qkv = qkv.baseAddress!, q = q.baseAddress!, w = w.baseAddress!
            L.ln1.forward(x, rows: t, into: a)
            L.qkv.forward(a, rows: t, into: qkv)
            let kc = cache.keys(layer: layer), vc = cache.values(layer: layer)
            for r in 0..<t {
                let row = qkv + r * 3 * d
                (q + r * d).update(from: row, count: d)
                (kc + (start + r) * d).update(from: row + d, count: d)
                (vc + (start + r) * d).update(from: row + 2 * d, count: d)
            }
            L.attention.forward(q: q, ownK: kc + start * d, ownV: vc + start * d, rows: t, visible: (0..<t).map { start + $0 },
                                keys: kc, values: vc, into: a)
            L.proj.forwardAccumulate(a, rows: t, into: x)
            L.ln2.forward(x, rows: t, into: a)
            L.fc.forward(a, rows: t, into: w)
            activation.forward(w, count: t * j, into: w)
            L.fcProj.forwardAccumulate(w, rows: t, into: x)
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
