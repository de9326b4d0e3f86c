// Typed errors of the checkpoint readers: each names the file, the tensor or key, and the fix.
import Foundation

public enum CheckpointError: Error, LocalizedError, Equatable {
    case cannotOpen(path: String, reason: String)
    case truncated(path: String, what: String, offset: Int, needed: Int, available: Int)
    case malformedHeader(path: String, detail: String)
    case unsupportedVersion(path: String, version: Int)
    case invalidName(path: String, detail: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case tensorOutOfBounds(path: String, tensor: String, detail: String)
    case missingTensor(path: String, tensor: String)
    case tensorsMismatch(path: String, missing: [String], unexpected: [String])
    case shapeMismatch(path: String, tensor: String, expected: [Int], found: [Int])
    case missingMetadata(path: String, key: String)
    case badMetadata(path: String, key: String, detail: String)
    case unsupportedArchitecture(path: String, name: String, supported: [String])

    public var errorDescription: String? {
        switch self {
        case let .cannotOpen(path, reason):
            return "\(path): cannot open checkpoint (\(reason)); check the path"
        case let .truncated(path, what, offset, needed, available):
            return "\(path): file is truncated: reading \(what) at byte \(offset) needs \(needed) bytes but only \(available) remain; re-download the file"
        case let .malformedHeader(path, detail):
            return "\(path): malformed header: \(detail); the file is corrupt or not this format"
        case let .unsupportedVersion(path, version):
            return "\(path): unsupported format version \(version) (supported: GGUF 2 and 3)"
        case let .invalidName(path, detail):
            return "\(path): invalid tensor or key name: \(detail)"
        case let .unsupportedDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)' has unsupported dtype \(dtype); convert the checkpoint to F32/F16/BF16 or a supported GGUF quantization"
        case let .tensorOutOfBounds(path, tensor, detail):
            return "\(path): tensor '\(tensor)' lies outside the file (\(detail)); the file is truncated or corrupt"
        case let .missingTensor(path, tensor):
            return "\(path): tensor '\(tensor)' is not in the checkpoint"
        case let .tensorsMismatch(path, missing, unexpected):
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(missing.count) tensor(s): \(missing.prefix(12).joined(separator: ", "))\(missing.count > 12 ? ", …" : "")") }
            if !unexpected.isEmpty { parts.append("unexpected \(unexpected.count) tensor(s): \(unexpected.prefix(12).joined(separator: ", "))\(unexpected.count > 12 ? ", …" : "")") }
            return "\(path): checkpoint does not match the architecture: \(parts.joined(separator: "; "))"
        case let .shapeMismatch(path, tensor, expected, found):
            // Products that overflow Int print as "?": a message must never trap.
            func count(_ s: [Int]) -> String {
                var p = 1
                for d in s { let (q, o) = p.multipliedReportingOverflow(by: d); if o { return "?" }; p = q }
                return String(p)
            }
            let n = count(found), m = count(expected)
            return "\(path): tensor '\(tensor)' has shape \(found) (\(n) elements), but \(expected) (\(m) elements) was expected by the model config or the destination buffer"
        case let .missingMetadata(path, key):
            return "\(path): required key '\(key)' is missing"
        case let .badMetadata(path, key, detail):
            return "\(path): key '\(key)': \(detail)"
        case let .unsupportedArchitecture(path, name, supported):
            return "\(path): architecture '\(name)' is not supported (supported: \(supported.joined(separator: ", ")))"
        }
    }
}
