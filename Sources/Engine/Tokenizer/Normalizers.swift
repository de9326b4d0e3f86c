// Normalizers: string → string, applied to each piece of text between added tokens (as HF's
// `AddedVocabulary::extract_and_normalize` does), before pre-tokenization.
import Foundation

protocol Normalizer: Sendable {
    func normalize(_ text: String) -> String
}

// MARK: - Factory

enum NormalizerFactory {
    static let supported = ["NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Prepend", "Replace", "Strip", "Sequence"]

    static func make(_ json: JSONNode) throws -> Normalizer {
        let type = try json.type()
        switch type {
        case "NFC": return UnicodeNormalizer(form: .nfc)
        case "NFD": return UnicodeNormalizer(form: .nfd)
        case "NFKC": return UnicodeNormalizer(form: .nfkc)
        case "NFKD": return UnicodeNormalizer(form: .nfkd)
        case "Lowercase": return LowercaseNormalizer()
        case "Prepend": return PrependNormalizer(prepend: try json.string("prepend"))
        case "Replace": return try ReplaceNormalizer(json)
        case "Strip": return StripNormalizer(left: try json.bool("strip_left", default: true), right: try json.bool("strip_right", default: true))
        case "Sequence":
            return NormalizerSequence(normalizers: try json.array("normalizers").map(make))
        default:
            throw json.unsupportedType(type, supported)
        }
    }
}

// MARK: - Stages

struct UnicodeNormalizer: Normalizer {
    enum Form { case nfc, nfd, nfkc, nfkd }
    let form: Form

    func normalize(_ text: String) -> String {
        // ASCII is invariant under all four forms.
        if text.utf8.allSatisfy({ $0 < 0x80 }) { return text }
        switch form {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        }
    }
}

/// Rust's `str::to_lowercase` (full Unicode lowercase mapping).
struct LowercaseNormalizer: Normalizer {
    func normalize(_ text: String) -> String { text.lowercased() }
}

/// HF `Prepend`: prefixes non-empty text (Llama-2's "▁").
struct PrependNormalizer: Normalizer {
    let prepend: String
    func normalize(_ text: String) -> String { text.isEmpty ? text : prepend + text }
}

/// HF `Replace` with a literal `{"String": …}` pattern (or a `{"Regex": …}` one via ICU).
struct ReplaceNormalizer: Normalizer, @unchecked Sendable {
    let literal: String?
    let regex: NSRegularExpression?
    let content: String

    init(_ json: JSONNode) throws {
        content = try json.string("content")
        let pattern = try json.required("pattern")
        if let s = try pattern.optionalString("String") {
            literal = s
            regex = nil
            guard !s.isEmpty else { throw json.unsupportedOption("pattern", "\"\"", "an empty pattern replaces nothing; remove the stage") }
        } else if let r = try pattern.optionalString("Regex") {
            literal = nil
            do { regex = try NSRegularExpression(pattern: r) } catch {
                throw json.unsupportedOption("pattern.Regex", r, "ICU cannot compile this regex")
            }
        } else {
            throw pattern.malformed("expected {\"String\": …} or {\"Regex\": …}")
        }
    }

    init(literal: String, content: String) {
        self.literal = literal
        self.regex = nil
        self.content = content
    }

    func normalize(_ text: String) -> String {
        if let literal { return replaceLiteral(text, literal, content) }
        guard let regex else { return text }
        let ns = text as NSString
        return regex.stringByReplacingMatches(in: text, range: NSRange(location: 0, length: ns.length),
                                              withTemplate: NSRegularExpression.escapedTemplate(for: content))
    }
}

/// HF `Strip`: removes leading/trailing Unicode whitespace.
struct StripNormalizer: Normalizer {
    let left: Bool
    let right: Bool

    func normalize(_ text: String) -> String {
        var scalars = Substring(text).unicodeScalars[...]
        if left { while let f = scalars.first, f.properties.isWhitespace { scalars.removeFirst() } }
        if right { while let l = scalars.last, l.properties.isWhitespace { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }
}

struct NormalizerSequence: Normalizer {
    let normalizers: [Normalizer]
    func normalize(_ text: String) -> String { normalizers.reduce(text) { $1.normalize($0) } }
}

/// Replaces every non-overlapping occurrence of `pattern`, left to right, comparing UTF-8 bytes
/// (Rust's `str::replace`; Foundation's replacement would compare canonically equivalent strings).
func replaceLiteral(_ text: String, _ pattern: String, _ replacement: String) -> String {
    let p = Array(pattern.utf8)
    guard !p.isEmpty else { return text }
    let t = Array(text.utf8)
    let n = t.count, m = p.count
    var out: [UInt8] = []
    var copied = 0 // bytes of t already in out
    var i = 0
    while i + m <= n {
        if t[i] == p[0] && t[i..<(i + m)].elementsEqual(p) {
            out.append(contentsOf: t[copied..<i])
            out.append(contentsOf: replacement.utf8)
            i += m
            copied = i
        } else {
            i += 1
        }
    }
    if copied == 0 { return text }
    out.append(contentsOf: t[copied...])
    return String(decoding: out, as: UTF8.self)
}
