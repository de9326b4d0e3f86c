// The dimension vocabulary shared by every architecture, and the errors of model loading.
import Foundation

/// Dimension letters used in shape comments throughout Engine (STYLE rule 3):
///   L layers · T positions · D model width · J FFN width (neurons per layer) · H query heads ·
///   G key/value heads · E head dim · V vocabulary · R rows of a batch · P rotary dim.
public struct ModelDimensions: Sendable, Equatable, Codable {
    public var layers: Int          // L
    public var width: Int           // D
    public var ffnWidth: Int        // J
    public var heads: Int           // H
    public var kvHeads: Int         // G
    public var headDim: Int         // E
    public var vocabulary: Int      // V
    public var contextLength: Int   // largest position + 1 the model was trained for

    public var neuronCount: Int { layers * ffnWidth }
}

public enum ModelError: Error, LocalizedError, Equatable {
    case badConfig(path: String, key: String, detail: String)
    case unsupported(path: String, key: String, value: String, supported: String)
    case tokenOutOfRange(token: Int, vocabulary: Int)
    case contextOverflow(needed: Int, limit: Int)
    case noTokenizer(path: String)

    public var errorDescription: String? {
        switch self {
        case let .badConfig(path, key, detail):
            return "\(path): '\(key)' \(detail)"
        case let .unsupported(path, key, value, supported):
            return "\(path): '\(key)' = \(value) is not supported (supported: \(supported))"
        case let .tokenOutOfRange(token, vocabulary):
            return "token id \(token) is outside the vocabulary 0..<\(vocabulary)"
        case let .contextOverflow(needed, limit):
            return "sequence of \(needed) tokens exceeds the model's context of \(limit) positions; shorten the prompt or lower --max-tokens"
        case let .noTokenizer(path):
            return "\(path): no tokenizer found (GGUF tokenizer.ggml.* metadata, or tokenizer.json beside config.json); add one to use text input"
        }
    }
}
