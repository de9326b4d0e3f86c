// Typed errors of the tokenizer room: each names the file, the JSON/GGUF key and the value, and the fix.
import Foundation

public enum TokenizerError: Error, LocalizedError, Equatable {
    case cannotRead(path: String, reason: String)
    case malformed(path: String, key: String, detail: String)
    case missingKey(path: String, key: String)
    /// A stage `"type"` (or a GGUF tokenizer model / pre-tokenizer name) this implementation does not have.
    case unsupportedType(path: String, key: String, value: String, supported: [String])
    /// A known stage with an option value this implementation does not reproduce.
    case unsupportedOption(path: String, key: String, value: String, detail: String)
    /// A merge, special token or template token that names a token missing from the vocabulary.
    case unknownToken(path: String, key: String, token: String)

    public var errorDescription: String? {
        switch self {
        case let .cannotRead(path, reason):
            return "\(path): cannot read tokenizer (\(reason)); check the path"
        case let .malformed(path, key, detail):
            return "\(path): key '\(key)': \(detail); the tokenizer file is corrupt or not in the HF tokenizers format"
        case let .missingKey(path, key):
            return "\(path): required key '\(key)' is missing"
        case let .unsupportedType(path, key, value, supported):
            return "\(path): key '\(key)' is '\(value)', which is not supported (supported: \(supported.joined(separator: ", "))); convert the tokenizer to one of these"
        case let .unsupportedOption(path, key, value, detail):
            return "\(path): key '\(key)' = \(value) is not supported: \(detail)"
        case let .unknownToken(path, key, token):
            return "\(path): key '\(key)' names token '\(token)', which is not in the vocabulary"
        }
    }
}
