// Gemma 3 (text): GeGLU FFN, (1 + w) RMSNorms around attention and FFN, per-head q/k norms,
// √D-scaled embeddings, sliding-window layers with their own rotary base; HF and GGUF weights.
import Foundation

// MARK: - Configuration (keys of HF config.json, Gemma3TextConfig)

/// One layer kind's rotary: `rope_parameters.full_attention` / `.sliding_attention` (transformers
/// 5), or `rope_theta` / `rope_local_base_freq` + `rope_scaling` on the global layers (4).
public struct Gemma3RopeParameters: Decodable, Sendable, Equatable {
    public var fullAttention: RopeScalingConfig?
    public var slidingAttention: RopeScalingConfig?
    enum CodingKeys: String, CodingKey { case fullAttention = "full_attention", slidingAttention = "sliding_attention" }
}

/// Read from config.json or GGUF metadata; `hfConfigObject` (HFExport) writes it back for --save-model.
public struct Gemma3Config: Decodable, Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var hiddenActivation: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    /// Global (full-attention) layers' rotary base and scaling.
    public var ropeTheta: Double
    public var ropeScaling: RopeScalingConfig?
    /// Sliding-window layers' rotary base (no scaling).
    public var ropeLocalBaseFreq: Double
    public var queryPreAttnScalar: Double
    public var slidingWindow: Int
    /// "sliding_attention" or "full_attention" per layer.
    public var layerTypes: [String]
    public var vocabSize: Int
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var finalLogitSoftcapping: Double?
    public var attnLogitSoftcapping: Double?
    public var useBidirectionalAttention: Bool

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", hiddenActivation = "hidden_activation"
        case maxPositionEmbeddings = "max_position_embeddings", rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta", ropeScaling = "rope_scaling", ropeLocalBaseFreq = "rope_local_base_freq"
        case ropeParameters = "rope_parameters"
        case queryPreAttnScalar = "query_pre_attn_scalar", slidingWindow = "sliding_window"
        case layerTypes = "layer_types", slidingWindowPattern = "sliding_window_pattern"
        case vocabSize = "vocab_size", tieWordEmbeddings = "tie_word_embeddings", attentionBias = "attention_bias"
        case finalLogitSoftcapping = "final_logit_softcapping", attnLogitSoftcapping = "attn_logit_softcapping"
        case useBidirectionalAttention = "use_bidirectional_attention"
    }

    public init(hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, numKeyValueHeads: Int,
                headDim: Int, hiddenActivation: String = "gelu_pytorch_tanh", maxPositionEmbeddings: Int, rmsNormEps: Double,
                ropeTheta: Double, ropeScaling: RopeScalingConfig? = nil, ropeLocalBaseFreq: Double, queryPreAttnScalar: Double,
                slidingWindow: Int, layerTypes: [String], vocabSize: Int, tieWordEmbeddings: Bool = true) {
        self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.numKeyValueHeads = numKeyValueHeads; self.headDim = headDim
        self.hiddenActivation = hiddenActivation; self.maxPositionEmbeddings = maxPositionEmbeddings; self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta; self.ropeScaling = ropeScaling; self.ropeLocalBaseFreq = ropeLocalBaseFreq
        self.queryPreAttnScalar = queryPreAttnScalar; self.slidingWindow = slidingWindow; self.layerTypes = layerTypes
        self.vocabSize = vocabSize; self.tieWordEmbeddings = tieWordEmbeddings
        attentionBias = false; finalLogitSoftcapping = nil; attnLogitSoftcapping = nil; useBidirectionalAttention = false
    }

    /// Layer kinds as HF makes them when `layer_types` is absent: every `pattern`-th layer global.
    static func defaultLayerTypes(layers: Int, pattern: Int) -> [String] {
        (0..<layers).map { (($0 + 1) % max(pattern, 1)) == 0 ? "full_attention" : "sliding_attention" }
    }

    /// Defaults as Gemma3TextConfig in transformers.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        hiddenSize = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? 2304
        intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? 9216
        numHiddenLayers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? 26
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? 8
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? 4
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? 256
        hiddenActivation = try c.decodeIfPresent(String.self, forKey: .hiddenActivation) ?? "gelu_pytorch_tanh"
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 131_072
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-6
        let params = try c.decodeIfPresent(Gemma3RopeParameters.self, forKey: .ropeParameters)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? params?.fullAttention?.ropeTheta ?? 1_000_000
        ropeScaling = try c.decodeIfPresent(RopeScalingConfig.self, forKey: .ropeScaling) ?? params?.fullAttention
        ropeLocalBaseFreq = try c.decodeIfPresent(Double.self, forKey: .ropeLocalBaseFreq) ?? params?.slidingAttention?.ropeTheta ?? 10_000
        queryPreAttnScalar = try c.decodeIfPresent(Double.self, forKey: .queryPreAttnScalar) ?? 256
        slidingWindow = try c.decodeIfPresent(Int.self, forKey: .slidingWindow) ?? 4096
        let pattern = try c.decodeIfPresent(Int.self, forKey: .slidingWindowPattern) ?? 6
        layerTypes = try c.decodeIfPresent([String].self, forKey: .layerTypes)
            ?? Self.defaultLayerTypes(layers: numHiddenLayers, pattern: pattern)
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? 262_208
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
        finalLogitSoftcapping = try c.decodeIfPresent(Double.self, forKey: .finalLogitSoftcapping)
        attnLogitSoftcapping = try c.decodeIfPresent(Double.self, forKey: .attnLogitSoftcapping)
        useBidirectionalAttention = try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) ?? false
    }

    /// From GGUF metadata (`gemma3.*` keys as llama.cpp's converter writes them). The file does
    /// not say everything: as llama.cpp, the local rotary base is 10,000, every sixth layer is
    /// global, and queries are scaled by 1/√(head dim) (= HF's query_pre_attn_scalar 256 for
    /// every size but 27B, which llama.cpp special-cases).
    public init(gguf: GGUFReader) throws {
        let shape = try GGUFDecoderShape(gguf)
        let a = try gguf.string("general.architecture")
        hiddenSize = shape.width; intermediateSize = shape.ffnWidth; numHiddenLayers = shape.layers
        numAttentionHeads = shape.heads; numKeyValueHeads = shape.kvHeads; headDim = shape.headDim ?? 256
        hiddenActivation = "gelu_pytorch_tanh"
        maxPositionEmbeddings = shape.contextLength; rmsNormEps = shape.rmsNormEps
        ropeTheta = shape.ropeBase ?? 1_000_000; ropeScaling = shape.ropeScaling
        ropeLocalBaseFreq = 10_000
        queryPreAttnScalar = Double(headDim)
        slidingWindow = try gguf.int("\(a).attention.sliding_window")
        let pattern = gguf.metadata["\(a).attention.sliding_window_pattern"]?.intValue ?? 6
        layerTypes = Self.defaultLayerTypes(layers: numHiddenLayers, pattern: pattern)
        vocabSize = shape.vocabulary; tieWordEmbeddings = shape.tiedEmbeddings
        attentionBias = false
        finalLogitSoftcapping = nil
        attnLogitSoftcapping = nil
        useBidirectionalAttention = false
    }

    func validate(path: String) throws {
        for (k, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", numHiddenLayers),
                       ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads),
                       ("head_dim", headDim), ("vocab_size", vocabSize), ("max_position_embeddings", maxPositionEmbeddings),
                       ("sliding_window", slidingWindow)] where v <= 0 {
            throw ModelError.badConfig(path: path, key: k, detail: "must be positive, found \(v)")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw ModelError.badConfig(path: path, key: "num_key_value_heads", detail: "(\(numKeyValueHeads)) must divide num_attention_heads (\(numAttentionHeads))")
        }
        guard headDim % 2 == 0 else { throw ModelError.badConfig(path: path, key: "head_dim", detail: "must be even for rotary embeddings, found \(headDim)") }
        guard queryPreAttnScalar > 0 else {
            throw ModelError.badConfig(path: path, key: "query_pre_attn_scalar", detail: "must be positive, found \(queryPreAttnScalar)")
        }
        guard layerTypes.count == numHiddenLayers else {
            throw ModelError.badConfig(path: path, key: "layer_types", detail: "lists \(layerTypes.count) layers for num_hidden_layers = \(numHiddenLayers)")
        }
        for (i, t) in layerTypes.enumerated() where t != "sliding_attention" && t != "full_attention" {
            throw ModelError.unsupported(path: path, key: "layer_types[\(i)]", value: t, supported: "sliding_attention, full_attention")
        }
        guard Activation(hfName: hiddenActivation) != nil else {
            throw ModelError.unsupported(path: path, key: "hidden_activation", value: hiddenActivation, supported: "gelu_pytorch_tanh, gelu, silu, relu")
        }
        // Gemma 2's soft-capping and EmbeddingGemma's bidirectional attention are other models.
        if let v = finalLogitSoftcapping { throw ModelError.unsupported(path: path, key: "final_logit_softcapping", value: "\(v)", supported: "null") }
        if let v = attnLogitSoftcapping { throw ModelError.unsupported(path: path, key: "attn_logit_softcapping", value: "\(v)", supported: "null") }
        if useBidirectionalAttention { throw ModelError.unsupported(path: path, key: "use_bidirectional_attention", value: "true", supported: "false") }
        if attentionBias { throw ModelError.unsupported(path: path, key: "attention_bias", value: "true", supported: "false") }
    }
}

// MARK: - The model

public enum Gemma3 {
    /// The norms of a block (HF names), each a (1 + w) RMSNorm.
    static let blockNorms = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm",
                             "self_attn.q_norm", "self_attn.k_norm"]

    /// Canonical (HF) parameter names and shapes.
    public static func parameterSpecs(_ c: Gemma3Config) -> [ParameterSpec] {
        let (d, j, e, qd, kvd) = (c.hiddenSize, c.intermediateSize, c.headDim, c.numAttentionHeads * c.headDim, c.numKeyValueHeads * c.headDim)
        var s = [ParameterSpec("model.embed_tokens.weight", [c.vocabSize, d])]
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)."
            s.append(ParameterSpec(p + "input_layernorm.weight", [d]))
            s.append(ParameterSpec(p + "self_attn.q_proj.weight", [qd, d]))
            s.append(ParameterSpec(p + "self_attn.k_proj.weight", [kvd, d]))
            s.append(ParameterSpec(p + "self_attn.v_proj.weight", [kvd, d]))
            s.append(ParameterSpec(p + "self_attn.o_proj.weight", [d, qd]))
            s.append(ParameterSpec(p + "self_attn.q_norm.weight", [e]))
            s.append(ParameterSpec(p + "self_attn.k_norm.weight", [e]))
            s.append(ParameterSpec(p + "post_attention_layernorm.weight", [d]))
            s.append(ParameterSpec(p + "pre_feedforward_layernorm.weight", [d]))
            s.append(ParameterSpec(p + "post_feedforward_layernorm.weight", [d]))
            s.append(ParameterSpec(p + "mlp.gate_proj.weight", [j, d]))
            s.append(ParameterSpec(p + "mlp.up_proj.weight", [j, d]))
            s.append(ParameterSpec(p + "mlp.down_proj.weight", [d, j]))
        }
        s.append(ParameterSpec("model.norm.weight", [d]))
        if !c.tieWordEmbeddings { s.append(ParameterSpec("lm_head.weight", [c.vocabSize, d])) }
        return s
    }

    /// HF checkpoints: canonical names; every norm stores w, used as 1 + w.
    static func hfKeyMap(_ specs: [ParameterSpec]) -> [String: ParameterSource] {
        Dictionary(uniqueKeysWithValues: specs.map { spec in
            let isNorm = spec.name == "model.norm.weight" || blockNorms.contains { spec.name.hasSuffix("." + $0 + ".weight") }
            return (spec.name, ParameterSource(spec.name, isNorm ? .addOne : .none))
        })
    }

    /// llama.cpp's GGUF names (norms already hold 1 + w; q/k rows are not permuted for Gemma).
    static func ggufKeyMap(_ c: Gemma3Config) -> [String: ParameterSource] {
        var m: [String: ParameterSource] = [
            "model.embed_tokens.weight": ParameterSource("token_embd.weight"),
            "model.norm.weight": ParameterSource("output_norm.weight"),
            "lm_head.weight": ParameterSource("output.weight"),
        ]
        for l in 0..<c.numHiddenLayers {
            let (p, b) = ("model.layers.\(l).", "blk.\(l).")
            for (hf, gg) in [("input_layernorm", "attn_norm"), ("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"),
                             ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("self_attn.q_norm", "attn_q_norm"),
                             ("self_attn.k_norm", "attn_k_norm"), ("post_attention_layernorm", "post_attention_norm"),
                             ("pre_feedforward_layernorm", "ffn_norm"), ("post_feedforward_layernorm", "post_ffw_norm"),
                             ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down")] {
                m[p + hf + ".weight"] = ParameterSource(b + gg + ".weight")
            }
        }
        return m
    }

    public static func load(hf source: HFDirectory, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        let config = try source.decodeConfig(Gemma3Config.self, as: "a Gemma 3 text config")
        let model = try build(config: config, path: source.path, stage: stage, placement: placement)
        let others = Set(parameterSpecs(config).map(\.name))    // other stages' tensors: never read
        try model.parameters.load(from: source, keyMap: hfKeyMap(model.parameters.specs)) { name in
            (config.tieWordEmbeddings && name == "lm_head.weight") || others.contains(name)
        }
        return model
    }

    public static func load(gguf: GGUFReader, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        let config = try Gemma3Config(gguf: gguf)
        let model = try build(config: config, path: gguf.path, stage: stage, placement: placement)
        let wanted = Set(model.parameters.specs.map(\.name))
        let all = ggufKeyMap(config)
        let full = Set(parameterSpecs(config).compactMap { all[$0.name]?.stored })    // other stages' tensors: never read
        try model.parameters.load(from: gguf, keyMap: all.filter { wanted.contains($0.key) }) { full.contains($0) }
        return model
    }

    /// The model for `config` with zero weights (loaders fill them); `stage`: one pipeline stage.
    public static func build(config c: Gemma3Config, path: String, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> TransformerModel {
        try c.validate(path: path)
        let (d, j, e, qd, kvd) = (c.hiddenSize, c.intermediateSize, c.headDim, c.numAttentionHeads * c.headDim, c.numKeyValueHeads * c.headDim)
        let dimensions = ModelDimensions(layers: c.numHiddenLayers, width: d, ffnWidth: j, heads: c.numAttentionHeads,
                                         kvHeads: c.numKeyValueHeads, headDim: e, vocabulary: c.vocabSize,
                                         contextLength: c.maxPositionEmbeddings)
        let slice = try ModelSlice.make(stage, dimensions: dimensions, path: path,
                                        rowCost: .init(dimensions: dimensions, queryWidth: qd, kvWidth: kvd, ffnMatrices: 3))
        let store = try ParameterStore(specs: parameterSpecs(c).filter { slice.holds(Llama.part(of: $0.name), tiedEmbeddings: c.tieWordEmbeddings) },
                                       placement: placement)
        // HF's per-layer-type rotary: the global one may be scaled (4B and larger: linear × 8).
        let global = RotaryEmbedding(layout: .halves, rotaryDim: e, headDim: e, base: Float(c.ropeTheta),
                                     scaling: try c.ropeScaling?.scaling(path: path, maxPositions: c.maxPositionEmbeddings) ?? .none)
        let local = RotaryEmbedding(layout: .halves, rotaryDim: e, headDim: e, base: Float(c.ropeLocalBaseFreq))
        let activation = Activation(hfName: c.hiddenActivation)!
        let eps = Float(c.rmsNormEps)
        let scale = Float(pow(c.queryPreAttnScalar, -0.5))
        let blocks = slice.layers.map { l -> DecoderBlock in
            let p = "model.layers.\(l)."
            func lin(_ n: String, _ o: Int, _ i: Int) -> Linear { Linear(weight: store.pointer(p + n + ".weight"), bias: nil, out: o, in: i) }
            func norm(_ n: String, _ w: Int = d) -> RMSNorm { RMSNorm(weight: store.pointer(p + n + ".weight"), width: w, eps: eps) }
            let sliding = c.layerTypes[l] == "sliding_attention"
            var block = DecoderBlock(
                inputNorm: .rms(norm("input_layernorm")),
                q: lin("self_attn.q_proj", qd, d), k: lin("self_attn.k_proj", kvd, d),
                v: lin("self_attn.v_proj", kvd, d), o: lin("self_attn.o_proj", d, qd),
                rotary: sliding ? local : global,
                attention: CausalAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads, headDim: e, scale: scale,
                                           window: sliding ? c.slidingWindow : nil),
                postAttentionNorm: .rms(norm("pre_feedforward_layernorm")),
                ffnIn: lin("mlp.gate_proj", j, d), ffnUp: lin("mlp.up_proj", j, d), ffnDown: lin("mlp.down_proj", d, j),
                activation: activation)
            block.queryNorm = norm("self_attn.q_norm", e)
            block.keyNorm = norm("self_attn.k_norm", e)
            block.attentionOutputNorm = .rms(norm("post_attention_layernorm"))
            block.ffnOutputNorm = .rms(norm("post_feedforward_layernorm"))
            block.rotaryTable = sliding ? .local : .main
            return block
        }
        let embedding = store.optionalPointer("model.embed_tokens.weight")
        let head = slice.holdsHead
        return TransformerModel(
            modelType: "gemma3_text", dimensions: dimensions,
            parameters: store, tiedEmbeddings: c.tieWordEmbeddings, slice: slice, blocks: blocks, rotary: global,
            tokenEmbedding: slice.holdsEmbedding ? embedding : nil, positionEmbedding: nil,
            finalNorm: head ? .rms(RMSNorm(weight: store.pointer("model.norm.weight"), width: d, eps: eps)) : nil,
            lmHead: head ? Linear(weight: c.tieWordEmbeddings ? embedding! : store.pointer("lm_head.weight"), bias: nil, out: c.vocabSize, in: d) : nil,
            localRotary: local, embeddingScale: Float(Double(d).squareRoot()))
    }
}
