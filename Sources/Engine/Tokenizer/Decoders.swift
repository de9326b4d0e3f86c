// Decoders: token strings → text. Each stage maps a list of strings to a list of strings (HF's
// `decode_chain`); the tokenizer joins what the last stage returns.
import Foundation

protocol TokenDecoder: Sendable {
    func decodeChain(_ tokens: [String]) -> [String]
}

// MARK: - Factory

enum DecoderFactory {
    static let supported = ["ByteLevel", "ByteFallback", "Fuse", "Strip", "Replace", "Metaspace", "Sequence"]

    static func make(_ json: JSONNode) throws -> TokenDecoder {
        let type = try json.type()
        switch type {
        case "ByteLevel": return ByteLevelDecoder()
        case "ByteFallback": return ByteFallbackDecoder()
        case "Fuse": return FuseDecoder()
        case "Strip":
            return StripDecoder(content: try stripContent(json), start: try json.int("start"), stop: try json.int("stop"))
        case "Replace": return try ReplaceDecoder(json)
        case "Metaspace": return try MetaspaceDecoder(json)
        case "Sequence": return DecoderSequence(decoders: try json.array("decoders").map(make))
        default: throw json.unsupportedType(type, supported)
        }
    }

    private static func stripContent(_ json: JSONNode) throws -> Unicode.Scalar {
        let s = try json.string("content")
        guard s.unicodeScalars.count == 1, let c = s.unicodeScalars.first else {
            throw json.unsupportedOption("content", s, "Strip removes one character; expected a single character")
        }
        return c
    }
}

// MARK: - Stages

/// HF `ByteLevel`: each token's scalars are read back as bytes of GPT-2's alphabet (a token with a
/// scalar outside the alphabet, e.g. an added token, contributes its own UTF-8); the bytes are
/// decoded as UTF-8 with U+FFFD for invalid sequences (Rust's `from_utf8_lossy`).
struct ByteLevelDecoder: TokenDecoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        var bytes: [UInt8] = []
        for t in tokens {
            let start = bytes.count
            var ok = true
            for s in t.unicodeScalars {
                guard let b = ByteLevelAlphabet.byte(for: s) else { ok = false; break }
                bytes.append(b)
            }
            if !ok {
                bytes.removeSubrange(start...)
                bytes.append(contentsOf: t.utf8)
            }
        }
        return [String(decoding: bytes, as: UTF8.self)]
    }
}

/// HF `ByteFallback`: runs of `<0xXX>` tokens become the text their bytes spell, or one U+FFFD
/// per byte when they are not valid UTF-8.
struct ByteFallbackDecoder: TokenDecoder {
    func decodeChain(_ tokens: [String]) -> [String] {
        var out: [String] = []
        out.reserveCapacity(tokens.count)
        var pending: [UInt8] = []
        func flush() {
            guard !pending.isEmpty else { return }
            let s = String(decoding: pending, as: UTF8.self)
            if s.utf8.elementsEqual(pending) {
                out.append(s)
            } else {
                out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
            }
            pending.removeAll(keepingCapacity: true)
        }
        for t in tokens {
            if let b = Self.byteValue(t) {
                pending.append(b)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }

    /// "<0xAB>" → 0xAB.
    static func byteValue(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        guard let h = hex(u[3]), let l = hex(u[4]) else { return nil }
        return h << 4 | l
    }
}

/// HF `Fuse`: all tokens into one string.
struct FuseDecoder: TokenDecoder {
    func decodeChain(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// HF `Strip`: removes up to `start` leading and `stop` trailing `content` characters from each token.
struct StripDecoder: TokenDecoder {
    let content: Unicode.Scalar
    let start: Int
    let stop: Int

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.map { t in
            var s = Substring(t).unicodeScalars[...]
            var k = 0
            while k < start, s.first == content { s.removeFirst(); k += 1 }
            k = 0
            while k < stop, s.last == content { s.removeLast(); k += 1 }
            return String(String.UnicodeScalarView(s))
        }
    }
}

/// HF `Replace` (literal pattern) on each token.
struct ReplaceDecoder: TokenDecoder {
    let normalizer: ReplaceNormalizer

    init(normalizer: ReplaceNormalizer) { self.normalizer = normalizer }
    init(_ json: JSONNode) throws { normalizer = try ReplaceNormalizer(json) }

    func decodeChain(_ tokens: [String]) -> [String] { tokens.map(normalizer.normalize) }
}

/// HF `Metaspace`: the replacement character becomes a space, except in the first token where
/// (unless `prepend_scheme` is `never`) every replacement character is dropped.
struct MetaspaceDecoder: TokenDecoder {
    let replacement: Unicode.Scalar
    let dropInFirst: Bool

    init(_ json: JSONNode) throws {
        let r = try json.string("replacement")
        guard r.unicodeScalars.count == 1, let c = r.unicodeScalars.first else {
            throw json.unsupportedOption("replacement", r, "the replacement must be one character")
        }
        replacement = c
        if let scheme = try json.optionalString("prepend_scheme") {
            dropInFirst = scheme != "never"
        } else {
            dropInFirst = try json.bool("add_prefix_space", default: true)
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        tokens.enumerated().map { i, t in
            var out = String.UnicodeScalarView()
            for s in t.unicodeScalars {
                if s == replacement {
                    if i == 0 && dropInFirst { continue }
                    out.append(" ")
                } else {
                    out.append(s)
                }
            }
            return String(out)
        }
    }
}

struct DecoderSequence: TokenDecoder {
    let decoders: [TokenDecoder]
    func decodeChain(_ tokens: [String]) -> [String] { decoders.reduce(tokens) { $1.decodeChain($0) } }
}
