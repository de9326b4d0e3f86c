// A small JSON reader for tokenizer files, and typed access that remembers the key path so every
// error names the file and the exact key (e.g. `pre_tokenizer.pretokenizers[1].type`).
//
// Why not JSONSerialization: it returns `[String: Any]`, and Swift dictionaries compare String keys
// by canonical equivalence, so a vocabulary holding both "é" (U+00E9) and "e\u{301}" would lose
// one of them. Here objects keep every (key, value) pair, in file order, byte for byte.
import Foundation

indirect enum JSONValue {
    case null
    case bool(Bool)
    case number(Double, isInteger: Bool)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])
}

// MARK: - Parser

struct JSONParser {
    private let b: UnsafeBufferPointer<UInt8>
    private var i = 0
    private let path: String

    enum Failure: Error { case at(Int, String) }

    static func parse(_ data: Data, path: String) throws -> JSONValue {
        do {
            return try data.withUnsafeBytes { raw -> JSONValue in
                var p = JSONParser(b: raw.bindMemory(to: UInt8.self), path: path)
                p.skipSpace()
                let v = try p.value()
                p.skipSpace()
                guard p.i == p.b.count else { throw Failure.at(p.i, "trailing characters") }
                return v
            }
        } catch let Failure.at(offset, what) {
            throw TokenizerError.malformed(path: path, key: "(byte \(offset))", detail: "not valid JSON: \(what)")
        }
    }

    private init(b: UnsafeBufferPointer<UInt8>, path: String) {
        self.b = b
        self.path = path
    }

    private mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ c: UInt8) throws {
        guard i < b.count, b[i] == c else { throw Failure.at(i, "expected '\(Character(Unicode.Scalar(c)))'") }
        i += 1
    }

    private mutating func value() throws -> JSONValue {
        guard i < b.count else { throw Failure.at(i, "unexpected end") }
        switch b[i] {
        case 0x7B: return try object()
        case 0x5B: return try array()
        case 0x22: return .string(try string())
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6E: try literal("null"); return .null
        default: return try number()
        }
    }

    private mutating func literal(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { throw Failure.at(i, "unexpected end") }
        for k in 0..<n where b[i + k] != word.utf8Start[k] { throw Failure.at(i, "unexpected literal") }
        i += n
    }

    private mutating func object() throws -> JSONValue {
        i += 1
        var pairs: [(key: String, value: JSONValue)] = []
        skipSpace()
        if i < b.count, b[i] == 0x7D { i += 1; return .object(pairs) }
        while true {
            skipSpace()
            let k = try string()
            skipSpace()
            try expect(0x3A)
            skipSpace()
            pairs.append((k, try value()))
            skipSpace()
            guard i < b.count else { throw Failure.at(i, "unterminated object") }
            if b[i] == 0x2C { i += 1; continue }
            try expect(0x7D)
            return .object(pairs)
        }
    }

    private mutating func array() throws -> JSONValue {
        i += 1
        var items: [JSONValue] = []
        skipSpace()
        if i < b.count, b[i] == 0x5D { i += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try value())
            skipSpace()
            guard i < b.count else { throw Failure.at(i, "unterminated array") }
            if b[i] == 0x2C { i += 1; continue }
            try expect(0x5D)
            return .array(items)
        }
    }

    private mutating func string() throws -> String {
        try expect(0x22)
        let start = i
        // Fast path: no escapes.
        while i < b.count, b[i] != 0x22, b[i] != 0x5C { i += 1 }
        if i < b.count, b[i] == 0x22 {
            defer { i += 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
        }
        var out = Array(b[start..<i])
        while true {
            guard i < b.count else { throw Failure.at(i, "unterminated string") }
            let c = b[i]
            if c == 0x22 { i += 1; return String(decoding: out, as: UTF8.self) }
            if c != 0x5C { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw Failure.at(i, "unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case 0x22, 0x5C, 0x2F: out.append(e)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x6E: out.append(0x0A)
            case 0x72: out.append(0x0D)
            case 0x74: out.append(0x09)
            case 0x75:
                var u = try hex4()
                if (0xD800..<0xDC00).contains(u), i + 6 <= b.count, b[i] == 0x5C, b[i + 1] == 0x75 {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        i = save
                    }
                }
                let scalar = Unicode.Scalar(u) ?? "\u{FFFD}"
                out.append(contentsOf: String(scalar).utf8)
            default:
                throw Failure.at(i - 1, "bad escape")
            }
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw Failure.at(i, "short \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw Failure.at(i, "bad hex digit")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        var isInteger = true
        while i < b.count {
            let c = b[i]
            if (0x30...0x39).contains(c) || c == 0x2D || c == 0x2B {
                i += 1
            } else if c == 0x2E || c == 0x65 || c == 0x45 {
                isInteger = false
                i += 1
            } else {
                break
            }
        }
        guard i > start, let d = Double(String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)) else {
            throw Failure.at(start, "unexpected character")
        }
        return .number(d, isInteger: isInteger)
    }
}

// MARK: - Typed access with key paths

struct JSONNode {
    let value: JSONValue
    let path: String
    let key: String

    /// Parses a JSON file whose root is an object.
    static func load(path: String) throws -> JSONNode {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw TokenizerError.cannotRead(path: path, reason: error.localizedDescription)
        }
        let v = try JSONParser.parse(data, path: path)
        guard case .object = v else { throw TokenizerError.malformed(path: path, key: "(root)", detail: "expected a JSON object") }
        return JSONNode(value: v, path: path, key: "")
    }

    private func childKey(_ name: String) -> String { key.isEmpty ? name : "\(key).\(name)" }

    /// The member `name`, or nil when absent or null.
    func child(_ name: String) -> JSONNode? {
        guard case let .object(pairs) = value else { return nil }
        for p in pairs where p.key.utf8.elementsEqual(name.utf8) {
            if case .null = p.value { return nil }
            return JSONNode(value: p.value, path: path, key: childKey(name))
        }
        return nil
    }

    func required(_ name: String) throws -> JSONNode {
        guard let c = child(name) else { throw TokenizerError.missingKey(path: path, key: childKey(name)) }
        return c
    }

    func has(_ name: String) -> Bool { child(name) != nil }

    var stringValue: String? { if case let .string(s) = value { return s }; return nil }

    var intValue: Int? {
        if case let .number(d, _) = value, d == d.rounded(), abs(d) < 9e15 { return Int(d) }
        return nil
    }

    var doubleValue: Double? { if case let .number(d, _) = value { return d }; return nil }

    func string(_ name: String) throws -> String {
        let c = try required(name)
        guard let s = c.stringValue else { throw c.malformed("expected a string") }
        return s
    }

    func optionalString(_ name: String) throws -> String? {
        guard let c = child(name) else { return nil }
        guard let s = c.stringValue else { throw c.malformed("expected a string") }
        return s
    }

    func bool(_ name: String, default fallback: Bool) throws -> Bool {
        guard let c = child(name) else { return fallback }
        guard case let .bool(b) = c.value else { throw c.malformed("expected true or false") }
        return b
    }

    func int(_ name: String) throws -> Int {
        let c = try required(name)
        guard let i = c.intValue else { throw c.malformed("expected an integer") }
        return i
    }

    func array(_ name: String) throws -> [JSONNode] { try required(name).elements() }

    func elements() throws -> [JSONNode] {
        guard case let .array(items) = value else { throw malformed("expected an array") }
        return items.enumerated().map { JSONNode(value: $0.element, path: path, key: "\(key)[\($0.offset)]") }
    }

    /// An object's members in file order.
    func members() throws -> [(key: String, node: JSONNode)] {
        guard case let .object(pairs) = value else { throw malformed("expected an object") }
        return pairs.map { ($0.key, JSONNode(value: $0.value, path: path, key: childKey($0.key))) }
    }

    /// The stage's `"type"` string.
    func type() throws -> String { try string("type") }

    func unsupportedType(_ value: String, _ supported: [String]) -> TokenizerError {
        .unsupportedType(path: path, key: childKey("type"), value: value, supported: supported)
    }

    func unsupportedOption(_ name: String, _ value: String, _ detail: String) -> TokenizerError {
        .unsupportedOption(path: path, key: childKey(name), value: value, detail: detail)
    }

    func malformed(_ detail: String) -> TokenizerError { .malformed(path: path, key: key.isEmpty ? "(root)" : key, detail: detail) }
}

// MARK: - Byte-exact string keys

/// A String compared and hashed by its UTF-8 bytes, as Rust's `String` is. Swift's own String
/// equality is canonical equivalence ("e\u{301}" == "é"), which would merge distinct tokens.
struct TokenKey: Hashable, @unchecked Sendable {
    let string: String

    init(_ s: String) {
        var s = s
        s.makeContiguousUTF8()
        string = s
    }

    static func == (a: TokenKey, b: TokenKey) -> Bool {
        a.string.utf8.withContiguousStorageIfAvailable { x in
            b.string.utf8.withContiguousStorageIfAvailable { y in
                x.count == y.count && (x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
            }
        }.flatMap { $0 } ?? a.string.utf8.elementsEqual(b.string.utf8)
    }

    func hash(into h: inout Hasher) {
        if string.utf8.withContiguousStorageIfAvailable({ h.combine(bytes: UnsafeRawBufferPointer($0)) }) == nil {
            Array(string.utf8).withUnsafeBytes { h.combine(bytes: $0) }
        }
    }
}
