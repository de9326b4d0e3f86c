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

public enum GPTJ {
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

    public static func load(hf source: HFDirectory, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        let config = try source.decodeConfig(GPTJConfig.self, as: "a GPT-J config")
        let model = try build(config: config, path: source.path, stage: stage, placement: placement)
        let map = Dictionary(uniqueKeysWithValues: model.parameters.specs.map { ($0.name, ParameterSource($0.name)) })
        let others = Set(parameterSpecs(config).map(\.name))    // other stages' tensors: never read
        try model.parameters.load(from: source, keyMap: map) { name in
            name.hasSuffix("attn.bias") || name.hasSuffix("attn.masked_bias") || name.hasSuffix("embed_positions")
                || (config.tieWordEmbeddings && name == "lm_head.weight") || others.contains(name)
        }
        return model
    }

    /// The part of the model a canonical tensor belongs to (for pipeline stages).
    static func part(of name: String) -> ModelSlice.Part {
        if name == "transformer.wte.weight" { return .tokenEmbedding }
        if name.hasPrefix("transformer.h."), let l = Int(name.dropFirst("transformer.h.".count).prefix { $0 != "." }) { return .layer(l) }
        return .head
    }

    /// The model for `config` with zero weights (loaders fill them). One LayerNorm feeds both
    /// attention and FFN (a parallel block: no post-attention norm).
    public static func build(config c: GPTJConfig, path: String, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        try c.validate(path: path)
        let (d, j, hd) = (c.nEmbd, c.innerSize, c.headDim)
        let dimensions = ModelDimensions(layers: c.nLayer, width: d, ffnWidth: j, heads: c.nHead, kvHeads: c.nHead,
                                         headDim: hd, vocabulary: c.vocabSize, contextLength: c.nPositions)
        let slice = try ModelSlice.make(stage, dimensions: dimensions, path: path,
                                        rowCost: .init(dimensions: dimensions, queryWidth: d, kvWidth: d, ffnMatrices: 2))
        let store = try ParameterStore(specs: parameterSpecs(c).filter { slice.holds(part(of: $0.name), tiedEmbeddings: c.tieWordEmbeddings) },
                                       placement: placement)
        let rotary = RotaryEmbedding(layout: .interleaved, rotaryDim: c.rotaryDimension, headDim: hd, base: 10000)
        let activation = Activation(hfName: c.activationFunction)!
        let eps = Float(c.layerNormEpsilon)
        let blocks = slice.layers.map { l -> DecoderBlock in
            let p = "transformer.h.\(l)."
            func lin(_ n: String, _ o: Int, _ i: Int) -> Linear {
                Linear(weight: store.pointer(p + n + ".weight"), bias: store.optionalPointer(p + n + ".bias"), out: o, in: i)
            }
            return DecoderBlock(
                inputNorm: .layer(LayerNorm(weight: store.pointer(p + "ln_1.weight"), bias: store.pointer(p + "ln_1.bias"), width: d, eps: eps)),
                q: lin("attn.q_proj", d, d), k: lin("attn.k_proj", d, d), v: lin("attn.v_proj", d, d), o: lin("attn.out_proj", d, d),
                rotary: rotary,
                attention: CausalAttention(heads: c.nHead, kvHeads: c.nHead, headDim: hd, scale: 1 / Float(hd).squareRoot()),
                postAttentionNorm: nil,
                ffnIn: lin("mlp.fc_in", j, d), ffnUp: nil, ffnDown: lin("mlp.fc_out", d, j),
                activation: activation)
        }
        let wte = store.optionalPointer("transformer.wte.weight")
        let head = slice.holdsHead
        return TransformerModel(
            modelType: "gptj", dimensions: dimensions,
            parameters: store, tiedEmbeddings: c.tieWordEmbeddings, slice: slice, blocks: blocks, rotary: rotary,
            tokenEmbedding: slice.holdsEmbedding ? wte : nil, positionEmbedding: nil,
            finalNorm: head ? .layer(LayerNorm(weight: store.pointer("transformer.ln_f.weight"), bias: store.pointer("transformer.ln_f.bias"), width: d, eps: eps)) : nil,
            lmHead: head ? Linear(weight: c.tieWordEmbeddings ? wte! : store.pointer("lm_head.weight"),
                                  bias: store.pointer("lm_head.bias"), out: c.vocabSize, in: d) : nil)
    }
}
