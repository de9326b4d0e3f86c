// Llama (1/2/3, Mistral-style, GQA): RMSNorm, rotary attention, SwiGLU FFN; HF and GGUF weights.
import Foundation

// MARK: - Configuration (keys of HF config.json)

/// HF `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
public struct RopeScalingConfig: Codable, Sendable, Equatable {
    public var ropeType: String
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?
    public var ropeTheta: Double?

    enum CodingKeys: String, CodingKey {
        case ropeType = "rope_type", type, factor
        case lowFreqFactor = "low_freq_factor", highFreqFactor = "high_freq_factor"
        case originalMaxPositionEmbeddings = "original_max_position_embeddings"
        case ropeTheta = "rope_theta"
    }

    public init(ropeType: String, factor: Double? = nil, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil,
                originalMaxPositionEmbeddings: Int? = nil, ropeTheta: Double? = nil) {
        self.ropeType = ropeType; self.factor = factor; self.lowFreqFactor = lowFreqFactor
        self.highFreqFactor = highFreqFactor; self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.ropeTheta = ropeTheta
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // transformers wrote "type" before "rope_type".
        ropeType = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? c.decodeIfPresent(String.self, forKey: .type) ?? "default"
        factor = try c.decodeIfPresent(Double.self, forKey: .factor)
        lowFreqFactor = try c.decodeIfPresent(Double.self, forKey: .lowFreqFactor)
        highFreqFactor = try c.decodeIfPresent(Double.self, forKey: .highFreqFactor)
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ropeType, forKey: .ropeType)
        try c.encodeIfPresent(factor, forKey: .factor)
        try c.encodeIfPresent(lowFreqFactor, forKey: .lowFreqFactor)
        try c.encodeIfPresent(highFreqFactor, forKey: .highFreqFactor)
        try c.encodeIfPresent(originalMaxPositionEmbeddings, forKey: .originalMaxPositionEmbeddings)
        try c.encodeIfPresent(ropeTheta, forKey: .ropeTheta)
    }

    /// The rotary scaling this config asks for; unknown kinds are refused by name.
    func scaling(path: String, maxPositions: Int) throws -> RotaryEmbedding.Scaling {
        func need(_ v: Double?, _ key: String) throws -> Float {
            guard let v, v > 0 else { throw ModelError.badConfig(path: path, key: "rope_scaling.\(key)", detail: "must be a positive number for rope_type '\(ropeType)'") }
            return Float(v)
        }
        switch ropeType {
        case "default": return .none
        case "linear": return .linear(factor: try need(factor, "factor"))
        case "dynamic":
            return .dynamic(factor: try need(factor, "factor"), originalContext: originalMaxPositionEmbeddings ?? maxPositions)
        case "llama3":
            return .llama3(factor: try need(factor, "factor"), lowFreqFactor: try need(lowFreqFactor, "low_freq_factor"),
                           highFreqFactor: try need(highFreqFactor, "high_freq_factor"),
                           originalContext: originalMaxPositionEmbeddings ?? maxPositions)
        default:
            throw ModelError.unsupported(path: path, key: "rope_scaling.rope_type", value: ropeType, supported: "default, linear, dynamic, llama3")
        }
    }
}

public struct LlamaConfig: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScalingConfig?
    public var vocabSize: Int
    public var maxPositionEmbeddings: Int
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var hiddenAct: String

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim"
        case rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta", ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters"
        case vocabSize = "vocab_size", maxPositionEmbeddings = "max_position_embeddings"
        case tieWordEmbeddings = "tie_word_embeddings", attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case hiddenAct = "hidden_act"
    }

    public init(hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int, headDim: Int, rmsNormEps: Double, ropeTheta: Double,
                ropeScaling: RopeScalingConfig?, vocabSize: Int, maxPositionEmbeddings: Int,
                tieWordEmbeddings: Bool, attentionBias: Bool = false, mlpBias: Bool = false, hiddenAct: String = "silu") {
        self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers; self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads; self.headDim = headDim; self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta; self.ropeScaling = ropeScaling; self.vocabSize = vocabSize
        self.maxPositionEmbeddings = maxPositionEmbeddings; self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias; self.mlpBias = mlpBias; self.hiddenAct = hiddenAct
    }

    /// Defaults as LlamaConfig in transformers; `rope_parameters` (v5) or `rope_theta` +
    /// `rope_scaling` (v4) both accepted.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 4096
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 11008
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 32
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 32
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hiddenSize / max(numAttentionHeads, 1)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        let params = try c.decodeIfPresent(RopeScalingConfig.self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? params?.ropeTheta ?? 10000
        ropeScaling = try c.decodeIfPresent(RopeScalingConfig.self, forKey: .ropeScaling) ?? params
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 32000
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? false
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        mlpBias = try c.decodeIfPresent(Bool.self, forKey: .mlpBias) ?? false
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize); try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers); try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads); try c.encode(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps); try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encodeIfPresent(ropeScaling, forKey: .ropeScaling); try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings); try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(mlpBias, forKey: .mlpBias); try c.encode(hiddenAct, forKey: .hiddenAct)
    }

    /// From GGUF metadata (`llama.*` keys, as llama.cpp's converter writes them).
    public init(gguf: GGUFReader) throws {
        let shape = try GGUFDecoderShape(gguf)
        hiddenSize = shape.width; intermediateSize = shape.ffnWidth; numHiddenLayers = shape.layers
        numAttentionHeads = shape.heads; numKeyValueHeads = shape.kvHeads
        headDim = shape.headDim ?? hiddenSize / max(numAttentionHeads, 1)
        rmsNormEps = shape.rmsNormEps; ropeTheta = shape.ropeBase ?? 10000; ropeScaling = shape.ropeScaling
        maxPositionEmbeddings = shape.contextLength; vocabSize = shape.vocabulary; tieWordEmbeddings = shape.tiedEmbeddings
        attentionBias = gguf.tensors["blk.0.attn_q.bias"] != nil
        mlpBias = gguf.tensors["blk.0.ffn_gate.bias"] != nil
        hiddenAct = "silu"
    }

    func validate(path: String) throws {
        for (k, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", numHiddenLayers),
                       ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads),
                       ("head_dim", headDim), ("vocab_size", vocabSize), ("max_position_embeddings", maxPositionEmbeddings)] where v <= 0 {
            throw ModelError.badConfig(path: path, key: k, detail: "must be positive, found \(v)")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw ModelError.badConfig(path: path, key: "num_key_value_heads", detail: "(\(numKeyValueHeads)) must divide num_attention_heads (\(numAttentionHeads))")
        }
        guard headDim % 2 == 0 else { throw ModelError.badConfig(path: path, key: "head_dim", detail: "must be even for rotary embeddings, found \(headDim)") }
        guard Activation(hfName: hiddenAct) != nil else {
            throw ModelError.unsupported(path: path, key: "hidden_act", value: hiddenAct, supported: "silu, gelu, gelu_new, gelu_pytorch_tanh, relu")
        }
    }
}

// MARK: - The model

public enum Llama {
    /// Canonical (HF) parameter names and shapes: the one size table of the weights.
    public static func parameterSpecs(_ c: LlamaConfig) -> [ParameterSpec] {
        let (d, j, qd, kvd) = (c.hiddenSize, c.intermediateSize, c.numAttentionHeads * c.headDim, c.numKeyValueHeads * c.headDim)
        var s = [ParameterSpec("model.embed_tokens.weight", [c.vocabSize, d])]
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)."
            s.append(ParameterSpec(p + "input_layernorm.weight", [d]))
            s.append(ParameterSpec(p + "self_attn.q_proj.weight", [qd, d]))
            s.append(ParameterSpec(p + "self_attn.k_proj.weight", [kvd, d]))
            s.append(ParameterSpec(p + "self_attn.v_proj.weight", [kvd, d]))
            if c.attentionBias {
                s.append(ParameterSpec(p + "self_attn.q_proj.bias", [qd]))
                s.append(ParameterSpec(p + "self_attn.k_proj.bias", [kvd]))
                s.append(ParameterSpec(p + "self_attn.v_proj.bias", [kvd]))
            }
            s.append(ParameterSpec(p + "self_attn.o_proj.weight", [d, qd]))
            if c.attentionBias { s.append(ParameterSpec(p + "self_attn.o_proj.bias", [d])) }
            s.append(ParameterSpec(p + "post_attention_layernorm.weight", [d]))
            s.append(ParameterSpec(p + "mlp.gate_proj.weight", [j, d]))
            s.append(ParameterSpec(p + "mlp.up_proj.weight", [j, d]))
            s.append(ParameterSpec(p + "mlp.down_proj.weight", [d, j]))
            if c.mlpBias {
                s.append(ParameterSpec(p + "mlp.gate_proj.bias", [j]))
                s.append(ParameterSpec(p + "mlp.up_proj.bias", [j]))
                s.append(ParameterSpec(p + "mlp.down_proj.bias", [d]))
            }
        }
        s.append(ParameterSpec("model.norm.weight", [d]))
        if !c.tieWordEmbeddings { s.append(ParameterSpec("lm_head.weight", [c.vocabSize, d])) }
        return s
    }

    /// HF checkpoints use the canonical names as they are.
    static func hfKeyMap(_ specs: [ParameterSpec]) -> [String: ParameterSource] {
        Dictionary(uniqueKeysWithValues: specs.map { ($0.name, ParameterSource($0.name)) })
    }

    /// llama.cpp's GGUF names; q/k rows are un-permuted back to HF's rotate_half layout.
    static func ggufKeyMap(_ c: LlamaConfig) -> [String: ParameterSource] {
        var m: [String: ParameterSource] = [
            "model.embed_tokens.weight": ParameterSource("token_embd.weight"),
            "model.norm.weight": ParameterSource("output_norm.weight"),
            "lm_head.weight": ParameterSource("output.weight"),
        ]
        for l in 0..<c.numHiddenLayers {
            let (p, b) = ("model.layers.\(l).", "blk.\(l).")
            m[p + "input_layernorm.weight"] = ParameterSource(b + "attn_norm.weight")
            m[p + "self_attn.q_proj.weight"] = ParameterSource(b + "attn_q.weight", .unpermuteRotaryHalves(heads: c.numAttentionHeads))
            m[p + "self_attn.k_proj.weight"] = ParameterSource(b + "attn_k.weight", .unpermuteRotaryHalves(heads: c.numKeyValueHeads))
            m[p + "self_attn.v_proj.weight"] = ParameterSource(b + "attn_v.weight")
            m[p + "self_attn.o_proj.weight"] = ParameterSource(b + "attn_output.weight")
            m[p + "self_attn.q_proj.bias"] = ParameterSource(b + "attn_q.bias")
            m[p + "self_attn.k_proj.bias"] = ParameterSource(b + "attn_k.bias")
            m[p + "self_attn.v_proj.bias"] = ParameterSource(b + "attn_v.bias")
            m[p + "self_attn.o_proj.bias"] = ParameterSource(b + "attn_output.bias")
            m[p + "post_attention_layernorm.weight"] = ParameterSource(b + "ffn_norm.weight")
            m[p + "mlp.gate_proj.weight"] = ParameterSource(b + "ffn_gate.weight")
            m[p + "mlp.up_proj.weight"] = ParameterSource(b + "ffn_up.weight")
            m[p + "mlp.down_proj.weight"] = ParameterSource(b + "ffn_down.weight")
            m[p + "mlp.gate_proj.bias"] = ParameterSource(b + "ffn_gate.bias")
            m[p + "mlp.up_proj.bias"] = ParameterSource(b + "ffn_up.bias")
            m[p + "mlp.down_proj.bias"] = ParameterSource(b + "ffn_down.bias")
        }
        return m
    }

    public static func load(hf source: HFDirectory, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        let config = try source.decodeConfig(LlamaConfig.self, as: "a Llama config")
        let model = try build(config: config, path: source.path, stage: stage, placement: placement)
        let others = Set(parameterSpecs(config).map(\.name))    // other stages' tensors: never read
        try model.parameters.load(from: source, keyMap: hfKeyMap(model.parameters.specs)) { name in
            name.hasSuffix("rotary_emb.inv_freq") || (config.tieWordEmbeddings && name == "lm_head.weight") || others.contains(name)
        }
        return model
    }

    public static func load(gguf: GGUFReader, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        let config = try LlamaConfig(gguf: gguf)
        let model = try build(config: config, path: gguf.path, stage: stage, placement: placement)
        let wanted = Set(model.parameters.specs.map(\.name))
        let all = ggufKeyMap(config)
        let full = Set(parameterSpecs(config).compactMap { all[$0.name]?.stored })    // other stages' tensors: never read
        try model.parameters.load(from: gguf, keyMap: all.filter { wanted.contains($0.key) }) { full.contains($0) }
        return model
    }

    /// The part of the model a canonical tensor belongs to (for pipeline stages).
    static func part(of name: String) -> ModelSlice.Part {
        if name == "model.embed_tokens.weight" { return .tokenEmbedding }
        if name.hasPrefix("model.layers."), let l = Int(name.dropFirst("model.layers.".count).prefix { $0 != "." }) { return .layer(l) }
        return .head
    }

    /// The model for `config` with zero weights (loaders fill them).
    /// `stage`: only that stage's layers and ends (ModelSlice); nil: the whole model.
    public static func build(config c: LlamaConfig, path: String, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        try c.validate(path: path)
        let (d, j, qd, kvd) = (c.hiddenSize, c.intermediateSize, c.numAttentionHeads * c.headDim, c.numKeyValueHeads * c.headDim)
        let dimensions = ModelDimensions(layers: c.numHiddenLayers, width: d, ffnWidth: j, heads: c.numAttentionHeads,
                                         kvHeads: c.numKeyValueHeads, headDim: c.headDim, vocabulary: c.vocabSize,
                                         contextLength: c.maxPositionEmbeddings)
        let slice = try ModelSlice.make(stage, dimensions: dimensions, path: path,
                                        rowCost: .init(dimensions: dimensions, queryWidth: qd, kvWidth: kvd, ffnMatrices: 3))
        let store = try ParameterStore(specs: parameterSpecs(c).filter { slice.holds(part(of: $0.name), tiedEmbeddings: c.tieWordEmbeddings) },
                                       placement: placement)
        let rotary = RotaryEmbedding(layout: .halves, rotaryDim: c.headDim, headDim: c.headDim, base: Float(c.ropeTheta),
                                     scaling: try c.ropeScaling?.scaling(path: path, maxPositions: c.maxPositionEmbeddings) ?? .none)
        let activation = Activation(hfName: c.hiddenAct)!
        let eps = Float(c.rmsNormEps)
        let blocks = slice.layers.map { l -> DecoderBlock in
            let p = "model.layers.\(l)."
            func lin(_ n: String, _ o: Int, _ i: Int) -> Linear {
                Linear(weight: store.pointer(p + n + ".weight"), bias: store.optionalPointer(p + n + ".bias"), out: o, in: i)
            }
            return DecoderBlock(
                inputNorm: .rms(RMSNorm(weight: store.pointer(p + "input_layernorm.weight"), width: d, eps: eps)),
                q: lin("self_attn.q_proj", qd, d), k: lin("self_attn.k_proj", kvd, d),
                v: lin("self_attn.v_proj", kvd, d), o: lin("self_attn.o_proj", d, qd),
                rotary: rotary,
                attention: CausalAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: c.headDim,
                                           scale: 1 / Float(c.headDim).squareRoot()),
                postAttentionNorm: .rms(RMSNorm(weight: store.pointer(p + "post_attention_layernorm.weight"), width: d, eps: eps)),
                ffnIn: lin("mlp.gate_proj", j, d), ffnUp: lin("mlp.up_proj", j, d), ffnDown: lin("mlp.down_proj", d, j),
                activation: activation)
        }
        let embedding = store.optionalPointer("model.embed_tokens.weight")
        let head = slice.holdsHead
        return TransformerModel(
            modelType: "llama", dimensions: dimensions,
            parameters: store, tiedEmbeddings: c.tieWordEmbeddings, slice: slice, blocks: blocks, rotary: rotary,
            tokenEmbedding: slice.holdsEmbedding ? embedding : nil, positionEmbedding: nil,
            finalNorm: head ? .rms(RMSNorm(weight: store.pointer("model.norm.weight"), width: d, eps: eps)) : nil,
            lmHead: head ? Linear(weight: c.tieWordEmbeddings ? embedding! : store.pointer("lm_head.weight"), bias: nil, out: c.vocabSize, in: d) : nil)
    }
}
