// The shape every llama.cpp decoder architecture writes under `<general.architecture>.*`, read once
// for the architecture files (Llama.swift, Gemma3.swift), which add what is theirs.
import Foundation

struct GGUFDecoderShape {
    let width, ffnWidth, layers, heads, kvHeads: Int
    /// `attention.key_length`, when the file gives it.
    let headDim: Int?
    let contextLength: Int
    let rmsNormEps: Double
    /// `rope.freq_base`, when the file gives it.
    let ropeBase: Double?
    let ropeScaling: RopeScalingConfig?
    let vocabulary: Int
    /// No `output.weight`: the LM head is the token embedding.
    let tiedEmbeddings: Bool

    init(_ gguf: GGUFReader) throws {
        let a = try gguf.string("general.architecture")
        func key(_ k: String) -> String { "\(a).\(k)" }
        width = try gguf.int(key("embedding_length"))
        ffnWidth = try gguf.int(key("feed_forward_length"))
        layers = try gguf.int(key("block_count"))
        heads = try gguf.int(key("attention.head_count"))
        kvHeads = (try? gguf.int(key("attention.head_count_kv"))) ?? heads
        headDim = try? gguf.int(key("attention.key_length"))
        rmsNormEps = try gguf.double(key("attention.layer_norm_rms_epsilon"))
        ropeBase = try? gguf.double(key("rope.freq_base"))
        contextLength = try gguf.int(key("context_length"))
        if let v = try? gguf.int(key("vocab_size")) {
            vocabulary = v
        } else if let e = gguf.tensors["token_embd.weight"] {
            vocabulary = e.shape[0]
        } else {
            throw CheckpointError.missingMetadata(path: gguf.path, key: key("vocab_size"))
        }
        if let kind = gguf.metadata[key("rope.scaling.type")]?.stringValue, kind != "none" {
            ropeScaling = RopeScalingConfig(ropeType: kind, factor: gguf.metadata[key("rope.scaling.factor")]?.doubleValue,
                                            originalMaxPositionEmbeddings: gguf.metadata[key("rope.scaling.original_context_length")]?.intValue)
        } else {
            ropeScaling = nil
        }
        tiedEmbeddings = gguf.tensors["output.weight"] == nil
    }
}
