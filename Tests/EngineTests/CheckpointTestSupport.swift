// Builders for small GGUF and safetensors files, the oracle manifest, and float comparisons.
import Engine
import Foundation
import XCTest

// MARK: - Little-endian byte helpers

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }

    mutating func writeLE<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        Swift.withUnsafeBytes(of: v.littleEndian) { b in
            for (i, x) in b.enumerated() where offset + i < count { self[offset + i] = x }
        }
    }

    func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v: T = 0
        Swift.withUnsafeMutableBytes(of: &v) { b in
            for i in 0..<b.count where offset + i < count { b[i] = self[offset + i] }
        }
        return T(littleEndian: v)
    }
}

func f16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

// MARK: - GGUF builder

/// Writes GGUF files field by field, remembering where each u64 length/count/offset field sits
/// (the malformed-input tests and the fuzzer corrupt exactly those).
struct GGUFBuilder {
    struct Tensor {
        var name: [UInt8]
        var ne: [UInt64]
        var typeID: UInt32
        var data: [UInt8]
        /// Overrides the data offset written into the tensor info.
        var offset: UInt64?
    }

    var version: UInt32 = 3
    /// Used to place the data section; write `general.alignment` too when it is not 32.
    var alignment = 32
    var metadata: [(key: [UInt8], type: UInt32, payload: [UInt8])] = []
    var tensors: [Tensor] = []
    var tensorCountOverride: UInt64?
    var kvCountOverride: UInt64?

    // Encoded values.
    static func str(_ s: String) -> [UInt8] { str(Array(s.utf8)) }
    static func str(_ b: [UInt8]) -> [UInt8] { var o: [UInt8] = []; o.appendLE(UInt64(b.count)); o += b; return o }
    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { var o: [UInt8] = []; o.appendLE(v); return o }

    mutating func add(_ key: String, type: UInt32, _ payload: [UInt8]) { metadata.append((Array(key.utf8), type, payload)) }
    mutating func add(_ key: String, u32 v: UInt32) { add(key, type: 4, Self.le(v)) }
    mutating func add(_ key: String, f32 v: Float) { add(key, type: 6, Self.le(v.bitPattern)) }
    mutating func add(_ key: String, string v: String) { add(key, type: 8, Self.str(v)) }
    mutating func add(_ key: String, strings v: [String]) {
        var p = Self.le(UInt32(8)) + Self.le(UInt64(v.count))
        for s in v { p += Self.str(s) }
        add(key, type: 9, p)
    }
    mutating func add(_ key: String, i32s v: [Int32]) {
        var p = Self.le(UInt32(5)) + Self.le(UInt64(v.count))
        for x in v { p += Self.le(x) }
        add(key, type: 9, p)
    }

    /// `shape` is row-major (outermost first); GGUF stores it reversed as `ne`.
    mutating func addTensor(_ name: String, shape: [Int], type: GGMLType, data: [UInt8]) {
        tensors.append(Tensor(name: Array(name.utf8), ne: shape.reversed().map { UInt64($0) }, typeID: type.rawValue, data: data))
    }

    struct Built {
        var bytes: [UInt8]
        /// Offsets of every u64 field: counts, string and array lengths, dimensions, data offsets.
        var u64Fields: [Int]
        /// Where the tensor infos start and where the data section starts (the header's end).
        var headerEnd: Int
        var dataStart: Int
        /// Offset of each tensor's data-offset field, and of each tensor's data in the file.
        var offsetFields: [Int]
        var dataOffsets: [Int]
        var tensorInfoStart: [Int]
        /// Where each metadata value's payload starts, by key.
        var valueStart: [String: Int]
    }

    func build() -> Built {
        var b: [UInt8] = []
        var u64: [Int] = []
        var valueStart: [String: Int] = [:]
        b.appendLE(UInt32(0x4655_4747))
        b.appendLE(version)
        u64.append(b.count); b.appendLE(tensorCountOverride ?? UInt64(tensors.count))
        u64.append(b.count); b.appendLE(kvCountOverride ?? UInt64(metadata.count))
        for m in metadata {
            u64.append(b.count); b.appendLE(UInt64(m.key.count)); b += m.key
            b.appendLE(m.type)
            let start = b.count
            valueStart[String(decoding: m.key, as: UTF8.self)] = start
            b += m.payload
            // Record the u64 fields inside the payload: string length, array count and lengths.
            if m.type == 8 { u64.append(start) }
            if m.type == 9, m.payload.count >= 12 {
                u64.append(start + 4)
                let et = m.payload.readLE(UInt32.self, at: 0)
                if et == 8 {
                    var o = 12
                    while o + 8 <= m.payload.count {
                        u64.append(start + o)
                        o += 8 + Int(m.payload.readLE(UInt64.self, at: o))
                    }
                }
            }
        }
        // Data layout: each tensor at the next aligned offset.
        var rel: [Int] = []
        var cursor = 0
        for t in tensors {
            rel.append(cursor)
            cursor = (cursor + t.data.count + alignment - 1) / alignment * alignment
        }
        var offsetFields: [Int] = []
        var infoStart: [Int] = []
        for (i, t) in tensors.enumerated() {
            infoStart.append(b.count)
            u64.append(b.count); b.appendLE(UInt64(t.name.count)); b += t.name
            b.appendLE(UInt32(t.ne.count))
            for n in t.ne { u64.append(b.count); b.appendLE(n) }
            b.appendLE(t.typeID)
            offsetFields.append(b.count)
            u64.append(b.count); b.appendLE(t.offset ?? UInt64(rel[i]))
        }
        let headerEnd = b.count
        while b.count % alignment != 0 { b.append(0) }
        let dataStart = b.count
        for (i, t) in tensors.enumerated() {
            while b.count < dataStart + rel[i] { b.append(0) }
            b += t.data
        }
        return Built(bytes: b, u64Fields: u64, headerEnd: headerEnd, dataStart: dataStart,
                     offsetFields: offsetFields, dataOffsets: rel.map { dataStart + $0 }, tensorInfoStart: infoStart,
                     valueStart: valueStart)
    }

    /// A small valid file with metadata of several types and tensors of several ggml types, the
    /// seed of the malformed-input tests and the fuzzer.
    static func sample(version: UInt32 = 3, seed: UInt64 = 1) -> GGUFBuilder {
        var rng = SplitMix64(seed: seed)
        var g = GGUFBuilder()
        g.version = version
        g.add("general.architecture", string: "llama")
        g.add("test.count", u32: 7)
        g.add("test.scale", f32: 0.5)
        g.add("test.string", string: "a longer string value for truncation")
        g.add("test.tokens", strings: ["<s>", "</s>", "ü", ""])
        g.add("test.ints", i32s: [1, -2, 3, 4])
        g.addTensor("w.f32", shape: [2, 3], type: .f32, data: (0..<6).flatMap { GGUFBuilder.le((Float($0) - 2.5).bitPattern) })
        g.addTensor("w.f16", shape: [4], type: .f16, data: [Float](arrayLiteral: 1, -2, 0.5, 65504).flatMap { GGUFBuilder.le(f16Bits($0)) })
        g.addTensor("w.q4_0", shape: [2, 32], type: .q4_0, data: randomBlocks(.q4_0, count: 2, &rng))
        g.addTensor("w.q8_0", shape: [32], type: .q8_0, data: randomBlocks(.q8_0, count: 1, &rng))
        g.addTensor("w.q4_k", shape: [256], type: .q4_K, data: randomBlocks(.q4_K, count: 1, &rng))
        g.addTensor("w.q6_k", shape: [256], type: .q6_K, data: randomBlocks(.q6_K, count: 1, &rng))
        g.addTensor("w.q2_k", shape: [256], type: .q2_K, data: randomBlocks(.q2_K, count: 1, &rng))
        return g
    }

    /// Random block bytes with finite f16 scale fields (at the offsets of ggml-common.h).
    static func randomBlocks(_ type: GGMLType, count: Int, _ rng: inout SplitMix64) -> [UInt8] {
        var out: [UInt8] = []
        let scaleOffsets: [Int]
        switch type {
        case .q4_0, .q5_0, .q8_0: scaleOffsets = [0]
        case .q4_1, .q5_1, .q4_K, .q5_K: scaleOffsets = [0, 2]
        case .q6_K: scaleOffsets = [208]
        case .q2_K: scaleOffsets = [80, 82]
        default: scaleOffsets = []
        }
        for _ in 0..<count {
            var block = (0..<type.bytesPerBlock).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            for o in scaleOffsets { block.writeLE(f16Bits(Float(rng.unit() * 2 - 1) * 0.1), at: o) }
            out += block
        }
        return out
    }
}

// MARK: - safetensors builder

/// Writes safetensors files from a header given as JSON text (so tests can write what no
/// well-behaved writer would: duplicate keys, bad UTF-8, nested shapes).
enum SafetensorsBuilder {
    /// 8-byte header length, the header padded with spaces to a multiple of 8, then `data`.
    static func file(header: [UInt8], data: [UInt8], lengthOverride: UInt64? = nil) -> [UInt8] {
        var h = header
        while h.count % 8 != 0 { h.append(0x20) }
        var b: [UInt8] = []
        b.appendLE(lengthOverride ?? UInt64(h.count))
        return b + h + data
    }

    struct Tensor {
        var name: String
        var dtype: String
        var shape: [Int]
        var data: [UInt8]
    }

    /// A well-formed file: offsets assigned in order.
    static func file(_ tensors: [Tensor], metadata: [String: String] = [:]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\"\($0.value)\"" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var data: [UInt8] = []
        for t in tensors {
            let begin = data.count
            data += t.data
            parts.append("\"\(t.name)\":{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(begin),\(data.count)]}")
        }
        return file(header: Array("{\(parts.joined(separator: ","))}".utf8), data: data)
    }

    static func sample(seed: UInt64 = 1) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        func floats(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.unit() * 4 - 2) } }
        return file([
            Tensor(name: "a.f32", dtype: "F32", shape: [2, 3], data: floats(6).flatMap { GGUFBuilder.le($0.bitPattern) }),
            Tensor(name: "b.f16", dtype: "F16", shape: [5], data: floats(5).flatMap { GGUFBuilder.le(f16Bits($0)) }),
            Tensor(name: "c.bf16", dtype: "BF16", shape: [2, 2, 2], data: floats(8).flatMap { GGUFBuilder.le(UInt16($0.bitPattern >> 16)) }),
            Tensor(name: "d.i32", dtype: "I32", shape: [3], data: (0..<3).flatMap { GGUFBuilder.le(Int32($0)) }),
            Tensor(name: "e.empty", dtype: "F32", shape: [0, 4], data: []),
        ], metadata: ["format": "pt"])
    }
}

// MARK: - Deterministic randomness

/// SplitMix64: a tiny seeded generator, the same on every machine.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}

// MARK: - Oracle outputs

/// `.assets/oracle/checkpoints/manifest.json` (scripts/oracle/fixtures_checkpoints.py).
struct CheckpointManifest: Decodable {
    struct Tensor: Decodable {
        var name: String
        var type: String
        var shape: [Int]?
        var offset: Int?
        var count: Int?
        var file: String?
    }
    struct Group: Decodable {
        var file: String?
        var dir: String?
        var expected: String?
        var tensors: [Tensor]
        var files: [String]?
    }
    var gguf: [String: Group]
    var unsupported: Group
    var safetensors_single: Group
    var hf_single: Group
    var hf_sharded: Group

    static func load() throws -> CheckpointManifest {
        let p = try Fixtures.require("oracle/checkpoints/manifest.json")
        return try JSONDecoder().decode(CheckpointManifest.self, from: Data(contentsOf: URL(fileURLWithPath: p)))
    }
}

/// Reads a `.npy` file of little-endian float32 (numpy's format 1.0/2.0), flattened.
enum NPY {
    static func float32(_ path: String) throws -> [Float] {
        let d = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        guard d.count >= 10, d[0] == 0x93, Array(d[1...5]) == Array("NUMPY".utf8) else { throw Bad(path: path, why: "not .npy") }
        let major = d[6]
        let headerLen = major == 1 ? Int(d.readLE(UInt16.self, at: 8)) : Int(d.readLE(UInt32.self, at: 8))
        let start = (major == 1 ? 10 : 12) + headerLen
        let header = String(decoding: d[(major == 1 ? 10 : 12)..<start], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False") else { throw Bad(path: path, why: header) }
        let n = (d.count - start) / 4
        return (0..<n).map { Float(bitPattern: d.readLE(UInt32.self, at: start + 4 * $0)) }
    }
    struct Bad: Error { let path: String; let why: String }
}

// MARK: - Comparisons

/// Distance in units in the last place between two floats (0 when both are NaN).
func ulpDistance(_ a: Float, _ b: Float) -> UInt32 {
    if a.isNaN && b.isNaN { return 0 }
    if a.isNaN || b.isNaN { return .max }
    if a == b { return 0 } // +0 == -0
    func ordered(_ x: Float) -> Int64 {
        let bits = Int64(x.bitPattern)
        return x.sign == .minus ? -(bits & 0x7FFF_FFFF) : bits
    }
    return UInt32(clamping: abs(ordered(a) - ordered(b)))
}

/// Asserts that `body` throws a `CheckpointError` accepted by `match`, whose message names
/// every string in `names` (the file, the tensor or key).
func assertCheckpointError<T>(_ body: @autoclosure () throws -> T, names: [String], file: StaticString = #filePath, line: UInt = #line,
                              _ match: (CheckpointError) -> Bool) {
    do {
        _ = try body()
        XCTFail("expected a CheckpointError naming \(names), but it succeeded", file: file, line: line)
    } catch let e as CheckpointError {
        XCTAssertTrue(match(e), "wrong case: \(e)", file: file, line: line)
        let msg = e.errorDescription ?? ""
        for n in names { XCTAssertTrue(msg.contains(n), "message does not name '\(n)': \(msg)", file: file, line: line) }
    } catch {
        XCTFail("expected a CheckpointError, got \(type(of: error)): \(error)", file: file, line: line)
    }
}

/// A fresh temporary directory, removed by the caller's `defer`.
func makeTempDir(_ tag: String) throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-\(tag)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}
