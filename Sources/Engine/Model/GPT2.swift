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

public enum GPT2 {
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

    public static func load(hf source: HFDirectory, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        let config = try source.decodeConfig(GPT2Config.self, as: "a GPT-2 config")
        let model = try build(config: config, path: source.path, stage: stage, placement: placement)
        let others = Set(hfKeyMap(parameterSpecs(config), source: source).values.map(\.stored))    // other stages' tensors: never read
        try model.parameters.load(from: source, keyMap: hfKeyMap(model.parameters.specs, source: source)) { name in
            // Causal-mask buffers of old checkpoints; the tied head is the embedding.
            name.hasSuffix("attn.bias") && !name.hasSuffix("c_attn.bias") || name.hasSuffix("attn.masked_bias")
                || (config.tieWordEmbeddings && name == "lm_head.weight") || others.contains(name)
        }
        return model
    }

    /// The part of the model a canonical tensor belongs to (for pipeline stages).
    static func part(of name: String) -> ModelSlice.Part {
        if name == "transformer.wte.weight" { return .tokenEmbedding }
        if name == "transformer.wpe.weight" { return .positionEmbedding }
        if name.hasPrefix("transformer.h."), let l = Int(name.dropFirst("transformer.h.".count).prefix { $0 != "." }) { return .layer(l) }
        return .head
    }

    /// The model for `config` with zero weights (loaders fill them).
    /// `stage`: only that stage's layers and ends (ModelSlice); nil: the whole model.
    public static func build(config c: GPT2Config, path: String, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        try c.validate(path: path)
        let (d, j, hd) = (c.nEmbd, c.innerSize, c.nEmbd / c.nHead)
        let dimensions = ModelDimensions(layers: c.nLayer, width: d, ffnWidth: j, heads: c.nHead, kvHeads: c.nHead,
                                         headDim: hd, vocabulary: c.vocabSize, contextLength: c.nPositions)
        let slice = try ModelSlice.make(stage, dimensions: dimensions, path: path,
                                        rowCost: .init(dimensions: dimensions, queryWidth: d, kvWidth: d, ffnMatrices: 2))
        let store = try ParameterStore(specs: parameterSpecs(c).filter { slice.holds(part(of: $0.name), tiedEmbeddings: c.tieWordEmbeddings) },
                                       placement: placement)
        let activation = Activation(hfName: c.activationFunction)!
        let eps = Float(c.layerNormEpsilon)
        let blocks = slice.layers.map { l -> DecoderBlock in
            let p = "transformer.h.\(l)."
            func lin(_ n: String, _ o: Int, _ i: Int) -> Linear {
                Linear(weight: store.pointer(p + n + ".weight"), bias: store.pointer(p + n + ".bias"), out: o, in: i)
            }
            func ln(_ n: String) -> Norm {
                .layer(LayerNorm(weight: store.pointer(p + n + ".weight"), bias: store.pointer(p + n + ".bias"), width: d, eps: eps))
            }
            // c_attn [3D, D] is q, k and v stacked: three views into the one weight and bias.
            let w = store.pointer(p + "attn.c_attn.weight"), b = store.pointer(p + "attn.c_attn.bias")
            // HF: scores / sqrt(E) if scale_attn_weights, then / (layer + 1) if scaled by layer.
            var scale: Float = c.scaleAttnWeights ? 1 / Float(hd).squareRoot() : 1
            if c.scaleAttnByInverseLayerIdx { scale /= Float(l + 1) }
            return DecoderBlock(
                inputNorm: ln("ln_1"),
                q: Linear(weight: w, bias: b, out: d, in: d),
                k: Linear(weight: w + d * d, bias: b + d, out: d, in: d),
                v: Linear(weight: w + 2 * d * d, bias: b + 2 * d, out: d, in: d),
                o: lin("attn.c_proj", d, d),
                rotary: nil,
                attention: CausalAttention(heads: c.nHead, kvHeads: c.nHead, headDim: hd, scale: scale),
                postAttentionNorm: ln("ln_2"),
                ffnIn: lin("mlp.c_fc", j, d), ffnUp: nil, ffnDown: lin("mlp.c_proj", d, j),
                activation: activation)
        }
        let wte = store.optionalPointer("transformer.wte.weight")
        let head = slice.holdsHead
        return TransformerModel(
            modelType: "gpt2", dimensions: dimensions,
            parameters: store, tiedEmbeddings: c.tieWordEmbeddings, slice: slice, blocks: blocks, rotary: nil,
            tokenEmbedding: slice.holdsEmbedding ? wte : nil, positionEmbedding: store.optionalPointer("transformer.wpe.weight"),
            finalNorm: head ? .layer(LayerNorm(weight: store.pointer("transformer.ln_f.weight"), bias: store.pointer("transformer.ln_f.bias"), width: d, eps: eps)) : nil,
            lmHead: head ? Linear(weight: c.tieWordEmbeddings ? wte! : store.pointer("lm_head.weight"), bias: nil, out: c.vocabSize, in: d) : nil)
    }
}
