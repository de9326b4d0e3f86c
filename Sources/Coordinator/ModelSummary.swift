// What `cnl inspect` reports about a model: architecture, sizes, storage, tokenizer, load cost.
@_exported import Engine
import Foundation

public struct ModelSummary: Codable, Sendable {
    public var path: String
    public var format: String
    public var architecture: String
    public var layers: Int
    public var width: Int
    public var ffnWidth: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabulary: Int
    public var contextLength: Int
    public var parameters: Int
    public var tiedEmbeddings: Bool
    public var storage: [String: Int]
    public var tokenizer: String?
    public var loadSeconds: Double
    public var fp32WeightBytes: Int
    public var peakResidentBytes: Int?

    enum CodingKeys: String, CodingKey {
        case path, format, architecture, layers, width = "hidden_size", ffnWidth = "intermediate_size"
        case heads = "num_attention_heads", kvHeads = "num_key_value_heads", headDim = "head_dim"
        case vocabulary = "vocab_size", contextLength = "context_length", parameters, tiedEmbeddings = "tied_embeddings"
        case storage, tokenizer, loadSeconds = "load_seconds", fp32WeightBytes = "fp32_weight_bytes"
        case peakResidentBytes = "peak_resident_bytes"
    }

    /// The storage type holding most elements, e.g. "Q4_1".
    public var dominantStorage: String { storage.max { $0.value < $1.value }?.key ?? "?" }

    public var text: String {
        func mb(_ b: Int) -> String { String(format: "%.1f MB", Double(b) / 1e6) }
        var lines = [
            "model         \(path)",
            "format        \(format)",
            "architecture  \(architecture)",
            "layers (L)    \(layers)",
            "width (D)     \(width)",
            "FFN width (J) \(ffnWidth)   (\(layers * ffnWidth) neurons)",
            "heads         \(heads) query, \(kvHeads) key/value, head dim \(headDim)",
            "vocabulary    \(vocabulary)",
            "context       \(contextLength)",
            "parameters    \(parameters) (\(tiedEmbeddings ? "tied" : "untied") embeddings)",
            "dtype         \(storage.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) elements; computed in F32",
            "tokenizer     \(tokenizer ?? "none found")",
            String(format: "loaded in     %.2f s", loadSeconds),
        ]
        if let peak = peakResidentBytes {
            lines.append("peak memory   \(mb(peak)) resident (\(String(format: "%.2f", Double(peak) / Double(fp32WeightBytes)))× the \(mb(fp32WeightBytes)) of F32 weights)")
        }
        return lines.joined(separator: "\n")
    }
}

public enum ModelInspector {
    /// Loads the model (timed) and summarizes it.
    public static func inspect(path: String) throws -> (ModelSummary, LoadedModel) {
        let start = Date()
        let loaded = try ModelRegistry.load(path: path)
        let seconds = Date().timeIntervalSince(start)
        let m = loaded.model
        let d = m.dimensions
        let params = m.parameters.parameterCount
        let summary = ModelSummary(
            path: path, format: loaded.format, architecture: m.modelType, layers: d.layers, width: d.width,
            ffnWidth: d.ffnWidth, heads: d.heads, kvHeads: d.kvHeads, headDim: d.headDim, vocabulary: d.vocabulary,
            contextLength: d.contextLength, parameters: params, tiedEmbeddings: m.tiedEmbeddings,
            storage: loaded.storage, tokenizer: loaded.tokenizer?.kind, loadSeconds: seconds,
            fp32WeightBytes: params * 4, peakResidentBytes: ProcessMemory.peakResident)
        return (summary, loaded)
    }
}
