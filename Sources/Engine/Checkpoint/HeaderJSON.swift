// A strict, bounded JSON parser for checkpoint headers (safetensors header, shard index).
import Foundation

/// A JSON value with objects kept in file order. Numbers keep their text so that integers are
/// read exactly (a 64-bit offset must not pass through a Double).
///
/// Why not JSONSerialization: it silently keeps one of two duplicate keys (a duplicated tensor
/// name must be an error), reports invalid UTF-8 only as "cannot parse", and rounds integers
/// above 2^53 through Double. This parser follows RFC 8259 strictly, limits nesting depth, and
/// says which of those went wrong and where.
enum HeaderJSON: Equatable {
    case object([(key: String, value: HeaderJSON)])
    case array([HeaderJSON])
    case string(String)
    case number(String)
    case bool(Bool)
    case null

    static func == (a: HeaderJSON, b: HeaderJSON) -> Bool {
        switch (a, b) {
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case let (.array(x), .array(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case (.null, .null): return true
        default: return false
        }
    }

    /// The members of an object, in file order.
    var members: [(key: String, value: HeaderJSON)]? { if case let .object(m) = self { return m }; return nil }
    var elements: [HeaderJSON]? { if case let .array(a) = self { return a }; return nil }
    var string: String? { if case let .string(s) = self { return s }; return nil }

    /// An integer literal (no fraction or exponent) that fits in Int.
    var int: Int? {
        guard case let .number(text) = self, !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) else { return nil }
        return Int(text)
    }

    /// How errors name the kind of value that was found.
    var typeName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    enum Failure: Error, Equatable {
        /// Not JSON: what was expected, at which byte of the text.
        case syntax(String, offset: Int)
        /// A string (key or value) whose bytes are not UTF-8, at which byte.
        case invalidUTF8(offset: Int)
        /// The same key twice in one object.
        case duplicateKey(String)
        case tooDeep(offset: Int)
    }

    static let maxDepth = 64

    static func parse(_ bytes: UnsafeRawBufferPointer) throws -> HeaderJSON {
        var p = Parser(bytes: bytes)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        guard p.i == bytes.count else { throw Failure.syntax("end of the JSON text", offset: p.i) }
        return v
    }

    static func parse(_ data: Data) throws -> HeaderJSON {
        try data.withUnsafeBytes { try parse($0) }
    }

    // MARK: - Parser

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var i = 0

        var atEnd: Bool { i >= bytes.count }
        func peek() -> UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func skipWhitespace() {
            while let b = peek(), b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D { i += 1 }
        }

        mutating func expect(_ b: UInt8, _ what: String) throws {
            guard peek() == b else { throw Failure.syntax(what, offset: i) }
            i += 1
        }

        mutating func value(depth: Int) throws -> HeaderJSON {
            guard depth < HeaderJSON.maxDepth else { throw Failure.tooDeep(offset: i) }
            guard let b = peek() else { throw Failure.syntax("a value", offset: i) }
            switch b {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw Failure.syntax("a value", offset: i)
            }
        }

        mutating func literal(_ word: String) throws {
            for c in word.utf8 {
                guard peek() == c else { throw Failure.syntax("'\(word)'", offset: i) }
                i += 1
            }
        }

        mutating func object(depth: Int) throws -> HeaderJSON {
            i += 1 // {
            var members: [(key: String, value: HeaderJSON)] = []
            var seen = Set<String>()
            skipWhitespace()
            if peek() == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw Failure.syntax("a string key", offset: i) }
                let key = try string()
                guard seen.insert(key).inserted else { throw Failure.duplicateKey(key) }
                skipWhitespace()
                try expect(UInt8(ascii: ":"), "':' after a key")
                skipWhitespace()
                members.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "}"), "',' or '}' in an object")
                return .object(members)
            }
        }

        mutating func array(depth: Int) throws -> HeaderJSON {
            i += 1 // [
            var items: [HeaderJSON] = []
            skipWhitespace()
            if peek() == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                if peek() == UInt8(ascii: ",") { i += 1; continue }
                try expect(UInt8(ascii: "]"), "',' or ']' in an array")
                return .array(items)
            }
        }

        mutating func number() throws -> String {
            let start = i
            if peek() == UInt8(ascii: "-") { i += 1 }
            guard let first = peek(), first >= 0x30, first <= 0x39 else { throw Failure.syntax("a digit", offset: i) }
            i += 1
            if first != 0x30 { while let d = peek(), d >= 0x30, d <= 0x39 { i += 1 } }
            if peek() == UInt8(ascii: ".") {
                i += 1
                guard let d = peek(), d >= 0x30, d <= 0x39 else { throw Failure.syntax("a digit after '.'", offset: i) }
                while let d = peek(), d >= 0x30, d <= 0x39 { i += 1 }
            }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                i += 1
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { i += 1 }
                guard let d = peek(), d >= 0x30, d <= 0x39 else { throw Failure.syntax("a digit in the exponent", offset: i) }
                while let d = peek(), d >= 0x30, d <= 0x39 { i += 1 }
            }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        }

        mutating func hex4() throws -> UInt32 {
            guard bytes.count - i >= 4 else { throw Failure.syntax("4 hex digits after \\u", offset: i) }
            var v: UInt32 = 0
            for _ in 0..<4 {
                let c = bytes[i]
                let d: UInt8
                switch c {
                case 0x30...0x39: d = c - 0x30
                case 0x41...0x46: d = c - 0x41 + 10
                case 0x61...0x66: d = c - 0x61 + 10
                default: throw Failure.syntax("a hex digit", offset: i)
                }
                v = v << 4 | UInt32(d)
                i += 1
            }
            return v
        }

        /// A string: its raw bytes must be UTF-8 (checked once at the end); escapes are decoded,
        /// and a \u escape must not leave a lone surrogate.
        mutating func string() throws -> String {
            let open = i
            i += 1 // "
            // Fast path: no escapes.
            var j = i
            while j < bytes.count, bytes[j] != UInt8(ascii: "\""), bytes[j] != UInt8(ascii: "\\"), bytes[j] >= 0x20 { j += 1 }
            if j < bytes.count, bytes[j] == UInt8(ascii: "\"") {
                let raw = UnsafeRawBufferPointer(rebasing: bytes[i..<j])
                guard let s = String(validating: raw, as: UTF8.self) else { throw Failure.invalidUTF8(offset: open) }
                i = j + 1
                return s
            }
            var out: [UInt8] = []
            while true {
                guard let b = peek() else { throw Failure.syntax("'\"' closing the string that starts at byte \(open)", offset: i) }
                i += 1
                switch b {
                case UInt8(ascii: "\""):
                    guard let s = String(validating: out, as: UTF8.self) else { throw Failure.invalidUTF8(offset: open) }
                    return s
                case UInt8(ascii: "\\"):
                    guard let e = peek() else { throw Failure.syntax("an escape", offset: i) }
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800...0xDBFF).contains(scalar) {
                            guard bytes.count - i >= 2, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                                throw Failure.invalidUTF8(offset: open)
                            }
                            i += 2
                            let low = try hex4()
                            guard (0xDC00...0xDFFF).contains(low) else { throw Failure.invalidUTF8(offset: open) }
                            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        } else if (0xDC00...0xDFFF).contains(scalar) {
                            throw Failure.invalidUTF8(offset: open)
                        }
                        guard let u = Unicode.Scalar(scalar) else { throw Failure.invalidUTF8(offset: open) }
                        out.append(contentsOf: Array(String(Character(u)).utf8))
                    default:
                        throw Failure.syntax("a valid escape", offset: i - 1)
                    }
                default:
                    guard b >= 0x20 else { throw Failure.syntax("no control character inside a string", offset: i - 1) }
                    out.append(b)
                }
            }
        }
    }
}
