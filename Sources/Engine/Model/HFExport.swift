// A loaded (and possibly tuned) model as an HF checkpoint stores it: config.json and the tensors
// under their HF names, with the load-time transforms undone (`cnl ... --save-model`).
import Foundation

extension TransformerModel {
    /// Every parameter as HF stores it: the same names as `parameters.specs`, GPT-2's Conv1D
    /// weights transposed back to [in, out], Gemma 3's norms as w (the loaded weights hold 1 + w).
    public func hfTensors() -> [(name: String, shape: [Int], values: [Float])] {
        precondition(slice.isFull, "internal: hfTensors needs the whole model, this is stage \(slice.stage)")
        return parameters.specs.map { spec in
            let v = Array(parameters.view(spec.name))
            switch modelType {
            case "gpt2" where spec.name.hasSuffix("c_attn.weight") || spec.name.hasSuffix("c_proj.weight") || spec.name.hasSuffix("c_fc.weight"):
                let (rows, cols) = (spec.shape[0], spec.shape[1])
                var t = [Float](repeating: 0, count: v.count)
                for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = v[r * cols + c] } }
                return (spec.name, [cols, rows], t)
            case "gemma3_text" where spec.name == "model.norm.weight" || Gemma3.blockNorms.contains(where: { spec.name.hasSuffix("." + $0 + ".weight") }):
                return (spec.name, spec.shape, v.map { $0 - 1 })
            default:
                return (spec.name, spec.shape, v)
            }
        }
    }
}

extension ModelRegistry {
    /// config.json for an HF copy of the checkpoint at `path`: an HF directory's own, or one made
    /// from a llama or Gemma 3 GGUF's metadata (LlamaConfig / Gemma3TextConfig, as transformers reads them).
    public static func hfConfigJSON(path: String) throws -> Data {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            return try HFDirectory(path: path).configData
        }
        let gguf = try GGUFReader(path: path)
        let architecture = try gguf.string("general.architecture")
        var object: [String: Any]
        switch architecture {
        case "llama":
            object = try jsonObject(LlamaConfig(gguf: gguf)) as? [String: Any] ?? [:]
            object["model_type"] = "llama"
            object["architectures"] = ["LlamaForCausalLM"]
        case "gemma3":
            object = try Gemma3Config(gguf: gguf).hfConfigObject()
        default:
            throw ModelError.badConfig(path: path, key: "general.architecture",
                                       detail: "--save-model writes HF directories of llama and gemma3 GGUF files and of HF directories; '\(architecture)' GGUF is not supported (convert it to an HF directory first)")
        }
        object["torch_dtype"] = "float32"
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}

extension Gemma3Config {
    /// Gemma3TextConfig's keys, the rotary both ways: `rope_parameters` per layer kind (as
    /// transformers 5 writes it) and `rope_theta` / `rope_local_base_freq` / `rope_scaling` (4).
    func hfConfigObject() throws -> [String: Any] {
        var full: [String: Any] = ["rope_type": "default", "rope_theta": ropeTheta]
        if let ropeScaling {
            full.merge(try jsonObject(ropeScaling) as? [String: Any] ?? [:]) { _, new in new }
            full["rope_theta"] = ropeTheta
        }
        var object: [String: Any] = [
            "model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
            "hidden_size": hiddenSize, "intermediate_size": intermediateSize, "num_hidden_layers": numHiddenLayers,
            "num_attention_heads": numAttentionHeads, "num_key_value_heads": numKeyValueHeads, "head_dim": headDim,
            "hidden_activation": hiddenActivation, "max_position_embeddings": maxPositionEmbeddings, "rms_norm_eps": rmsNormEps,
            "rope_theta": ropeTheta, "rope_local_base_freq": ropeLocalBaseFreq,
            "rope_parameters": ["full_attention": full, "sliding_attention": ["rope_type": "default", "rope_theta": ropeLocalBaseFreq]],
            "query_pre_attn_scalar": queryPreAttnScalar, "sliding_window": slidingWindow, "layer_types": layerTypes,
            "vocab_size": vocabSize, "tie_word_embeddings": tieWordEmbeddings, "attention_bias": attentionBias,
            "final_logit_softcapping": finalLogitSoftcapping ?? NSNull() as Any, "attn_logit_softcapping": attnLogitSoftcapping ?? NSNull() as Any, "use_bidirectional_attention": useBidirectionalAttention,
        ]
        if let ropeScaling {
            object["rope_scaling"] = try jsonObject(ropeScaling)
        }
        return object
    }
}

/// A Codable config as the JSON object it encodes to, to merge with keys written by hand.
private func jsonObject(_ value: some Encodable) throws -> Any {
    try JSONSerialization.jsonObject(with: try JSONEncoder().encode(value))
}
