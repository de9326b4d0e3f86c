// Seeded random mutation of GGUF and safetensors files: parse, read every tensor, never crash.
import Engine
import Foundation
import XCTest

/// Each mutated input is parsed and, when accepted, every tensor is read into a Float buffer.
/// The only allowed outcomes are success and a thrown `CheckpointError`; a crash kills the test
/// process (and so fails the run). A file that opened must not fail to read except for a type
/// it refuses by name: bounds are checked at open, so a read error after that is a bug.
///
/// `CNL_FUZZ_ITERATIONS` (default 5,000 per parser) and `CNL_FUZZ_SEED` steer bigger runs.
final class CheckpointFuzzTests: XCTestCase {
    static var iterations: Int { Int(ProcessInfo.processInfo.environment["CNL_FUZZ_ITERATIONS"] ?? "") ?? 5000 }
    static var seed: UInt64 { UInt64(ProcessInfo.processInfo.environment["CNL_FUZZ_SEED"] ?? "") ?? 0x5EED_C4E7 }

    struct Seed {
        var name: String
        var bytes: [UInt8]
        /// Offsets of u64 length/count/offset fields to corrupt on purpose.
        var u64Fields: [Int]
        /// Mutations land in `0..<headerEnd` four times out of five.
        var headerEnd: Int
    }

    struct Tally {
        var inputs = 0, accepted = 0, rejected = 0, tensorsRead = 0, readsRefused = 0, failures = 0
        var errorCases: [String: Int] = [:]
        var mutations: [String: Int] = [:]
    }

    // MARK: - Seeds

    static func ggufSeeds() throws -> [Seed] {
        var seeds: [Seed] = []
        func add(_ name: String, _ g: GGUFBuilder) {
            let b = g.build()
            seeds.append(Seed(name: name, bytes: b.bytes, u64Fields: b.u64Fields, headerEnd: b.headerEnd))
        }
        add("sample-v3", GGUFBuilder.sample(version: 3, seed: 11))
        add("sample-v2", GGUFBuilder.sample(version: 2, seed: 12))

        // Every metadata value type, a custom alignment, the remaining quant types.
        var rng = SplitMix64(seed: 13)
        var g = GGUFBuilder()
        g.alignment = 64
        g.add("general.alignment", u32: 64)
        g.add("v.u8", type: 0, [200])
        g.add("v.i8", type: 1, [0x80])
        g.add("v.u16", type: 2, GGUFBuilder.le(UInt16(65535)))
        g.add("v.i16", type: 3, GGUFBuilder.le(Int16(-3)))
        g.add("v.i32", type: 5, GGUFBuilder.le(Int32(-7)))
        g.add("v.bool", type: 7, [1])
        g.add("v.u64", type: 10, GGUFBuilder.le(UInt64.max))
        g.add("v.i64", type: 11, GGUFBuilder.le(Int64.min))
        g.add("v.f64", type: 12, GGUFBuilder.le(Double.pi.bitPattern))
        g.add("v.u8s", type: 9, GGUFBuilder.le(UInt32(0)) + GGUFBuilder.le(UInt64(3)) + [1, 2, 3])
        g.add("v.f32s", type: 9, GGUFBuilder.le(UInt32(6)) + GGUFBuilder.le(UInt64(2)) + GGUFBuilder.le(Float(1).bitPattern) + GGUFBuilder.le(Float(-1).bitPattern))
        g.add("v.empty", type: 9, GGUFBuilder.le(UInt32(8)) + GGUFBuilder.le(UInt64(0)))
        g.addTensor("q4_1", shape: [32], type: .q4_1, data: GGUFBuilder.randomBlocks(.q4_1, count: 1, &rng))
        g.addTensor("q5_0", shape: [2, 32], type: .q5_0, data: GGUFBuilder.randomBlocks(.q5_0, count: 2, &rng))
        g.addTensor("q5_1", shape: [32], type: .q5_1, data: GGUFBuilder.randomBlocks(.q5_1, count: 1, &rng))
        g.addTensor("q5_k", shape: [256], type: .q5_K, data: GGUFBuilder.randomBlocks(.q5_K, count: 1, &rng))
        g.addTensor("bf16", shape: [3], type: .bf16, data: [0, 0x3F, 0x80, 0xBF, 0x00, 0x7F])
        g.addTensor("iq4_nl", shape: [32], type: .iq4_nl, data: GGUFBuilder.randomBlocks(.iq4_nl, count: 1, &rng))
        add("all-types", g)

        // A file gguf-py wrote (its u64 fields: only the two counts are known here).
        let path = try Fixtures.require("oracle/checkpoints/gguf/Q4_1.gguf")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let r = try GGUFReader(path: path)
        let dataStart = r.tensorInfos.values.map(\.fileOffset).min() ?? bytes.count
        seeds.append(Seed(name: "gguf-py", bytes: bytes, u64Fields: [8, 16], headerEnd: dataStart))
        return seeds
    }

    static func safetensorsSeeds() throws -> [Seed] {
        var seeds: [Seed] = []
        func add(_ name: String, _ bytes: [UInt8]) {
            seeds.append(Seed(name: name, bytes: bytes, u64Fields: [0], headerEnd: 8 + Int(bytes.readLE(UInt64.self, at: 0))))
        }
        add("sample", SafetensorsBuilder.sample(seed: 21))
        add("escaped", SafetensorsBuilder.file(header: Array(#"{"\u00e9\"x":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"n":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}"#.utf8),
                                               data: [UInt8](repeating: 0x3F, count: 16)))
        for rel in ["oracle/checkpoints/safetensors/single.safetensors", "oracle/checkpoints/safetensors/hf_sharded/model-00001-of-00003.safetensors"] {
            let p = try Fixtures.require(rel)
            add(URL(fileURLWithPath: p).lastPathComponent, [UInt8](try Data(contentsOf: URL(fileURLWithPath: p))))
        }
        return seeds
    }

    // MARK: - Mutations

    static let interestingU64: [UInt64] = [0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 31, 32, 33, 63, 64, 255, 256, 4096, 65535, 1 << 31,
                                           (1 << 32) - 1, 1 << 32, 1 << 40, 1 << 44, 1 << 48, 1 << 60, 1 << 63, .max, .max - 1]
    static let jsonNumbers = ["0", "-1", "1", "7", "24", "4294967296", "9223372036854775807", "18446744073709551616",
                              "1e3", "1.5", "-0", "99999999999999999999999", "1125899906842624"]
    static let jsonTokens = ["F32", "F16", "BF16", "F64", "I32", "U8", "Q7", "dtype", "shape", "data_offsets", "__metadata__",
                             "a.f32", "b.f16", "x", ""]
    static let jsonBits = ["[", "]", "{", "}", ",", ":", "\"", "\\", "\\u", "\\ud800", " ", "[[1]]", "null", "-", "\u{00}", "\u{FF}"]

    /// One to three mutations of `seed`; returns the input and the names of what was done.
    static func mutate(_ seed: Seed, json: Bool, _ rng: inout SplitMix64) -> ([UInt8], [String]) {
        var b = seed.bytes
        var done: [String] = []
        func position() -> Int {
            let end = rng.below(5) == 0 ? b.count : min(seed.headerEnd, b.count)
            return rng.below(max(end, 1))
        }
        // Field-level corruption first, while the recorded offsets still hold.
        if rng.below(4) == 0, !seed.u64Fields.isEmpty {
            let at = seed.u64Fields[rng.below(seed.u64Fields.count)]
            let old = b.readLE(UInt64.self, at: at)
            let candidates = interestingU64 + [old &+ 1, old &- 1, old &* 2, old &+ 8, old &+ 32, UInt64(b.count), UInt64(b.count - at), rng.next()]
            b.writeLE(candidates[rng.below(candidates.count)], at: at)
            done.append("u64")
        }
        // Mostly one mutation (so a fair share of inputs stays parseable and reaches the
        // readers), sometimes two or three.
        let r = rng.below(20)
        for _ in 0..<(r < 12 ? 1 : r < 17 ? 2 : 3) {
            guard !b.isEmpty else { break }
            switch rng.below(json ? 11 : 8) {
            case 0:
                b[position()] ^= 1 << UInt8(rng.below(8)); done.append("bitflip")
            case 1:
                b[position()] = [0x00, 0xFF, UInt8(truncatingIfNeeded: rng.next())][rng.below(3)]; done.append("byte")
            case 2:
                b.removeLast(b.count - position()); done.append("truncate")
            case 3:
                let p = position()
                b.insert(contentsOf: (0..<(1 + rng.below(16))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: p); done.append("insert")
            case 4:
                let p = position()
                b.removeSubrange(p..<min(b.count, p + 1 + rng.below(16))); done.append("delete")
            case 5:
                // A u32 anywhere in the header: type ids, dimension counts, value types.
                let p = position()
                let v: UInt32 = [UInt32(rng.below(42)), 9, 8, 0, 5, 0xFFFF_FFFF, UInt32(truncatingIfNeeded: rng.next())][rng.below(7)]
                b.writeLE(v, at: p); done.append("u32")
            case 6:
                // Copy a chunk of the header over another place (duplicates names and fields).
                let from = position(), to = position(), n = 1 + rng.below(24)
                let chunk = Array(b[from..<min(b.count, from + n)])
                for (i, x) in chunk.enumerated() where to + i < b.count { b[to + i] = x }
                done.append("splice")
            case 7:
                let p = position()
                b.writeLE(interestingU64[rng.below(interestingU64.count)], at: p); done.append("u64-anywhere")
            case 8:
                // JSON: replace a number.
                let header = max(8, min(seed.headerEnd, b.count))
                let digits = (8..<header).filter { b[$0] >= 0x30 && b[$0] <= 0x39 && ($0 == 8 || !(b[$0 - 1] >= 0x30 && b[$0 - 1] <= 0x39)) }
                guard let start = digits.isEmpty ? nil : digits[rng.below(digits.count)] else { continue }
                var end = start
                while end < header, b[end] >= 0x30, b[end] <= 0x39 { end += 1 }
                b.replaceSubrange(start..<end, with: Array(jsonNumbers[rng.below(jsonNumbers.count)].utf8)); done.append("json-number")
            case 9:
                // JSON: replace the text of a string.
                let header = max(8, min(seed.headerEnd, b.count))
                let quotes = (8..<header).filter { b[$0] == UInt8(ascii: "\"") }
                guard quotes.count >= 2 else { continue }
                let k = rng.below(quotes.count - 1)
                b.replaceSubrange(quotes[k] + 1..<quotes[k + 1], with: Array(jsonTokens[rng.below(jsonTokens.count)].utf8)); done.append("json-string")
            default:
                // JSON: insert structure.
                let p = min(8 + rng.below(max(1, min(seed.headerEnd, b.count) - 8)), b.count)
                b.insert(contentsOf: Array(jsonBits[rng.below(jsonBits.count)].utf8), at: p); done.append("json-insert")
            }
        }
        return (b, done)
    }

    // MARK: - Running

    private func name(of e: CheckpointError) -> String {
        String(describing: e).prefix(while: { $0 != "(" }).description
    }

    private func fuzz(_ label: String, seeds: [Seed], json: Bool,
                      open: (MappedFile) throws -> TensorSource, maxElementsPerByte: Int) throws -> Tally {
        var rng = SplitMix64(seed: Self.seed ^ (json ? 0x57 : 0x66))
        var t = Tally()
        let failDir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-fuzz-failures")
        let start = Date()
        for i in 0..<Self.iterations {
            let seed = seeds[i % seeds.count]
            let (input, ops) = Self.mutate(seed, json: json, &rng)
            for op in ops { t.mutations[op, default: 0] += 1 }
            t.inputs += 1
            func fail(_ why: String) {
                t.failures += 1
                try? FileManager.default.createDirectory(at: failDir, withIntermediateDirectories: true)
                let p = failDir.appendingPathComponent("\(label)-\(i)")
                try? Data(input).write(to: p)
                XCTFail("\(label) input #\(i) (seed \(seed.name), \(ops)): \(why); saved to \(p.path)")
            }
            let file = MappedFile(path: "fuzz-\(label)-\(i)", bytes: input)
            let source: TensorSource
            do {
                source = try open(file)
            } catch let e as CheckpointError {
                t.rejected += 1
                t.errorCases[name(of: e), default: 0] += 1
                _ = e.errorDescription
                continue
            } catch {
                fail("threw \(type(of: error)): \(error)")
                continue
            }
            t.accepted += 1
            for (name, e) in source.tensors.sorted(by: { $0.key < $1.key }) {
                guard e.elementCount <= maxElementsPerByte * max(input.count, 1) else {
                    fail("tensor '\(name)' claims \(e.elementCount) elements in a \(input.count)-byte file"); break
                }
                var buffer = [Float](repeating: 0, count: e.elementCount)
                do {
                    try buffer.withUnsafeMutableBufferPointer { try source.read(name, into: $0) }
                    t.tensorsRead += 1
                } catch let err as CheckpointError {
                    if case .unsupportedDType = err { t.readsRefused += 1 } else { fail("opened, but reading '\(name)' threw \(err)") }
                } catch {
                    fail("reading '\(name)' threw \(type(of: error)): \(error)")
                }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        print("fuzz \(label): \(t.inputs) inputs from \(seeds.count) seeds (seed \(Self.seed)) in \(String(format: "%.2f", seconds)) s: "
              + "\(t.accepted) parsed OK (\(t.tensorsRead) tensors read, \(t.readsRefused) refused by type), "
              + "\(t.rejected) rejected with CheckpointError, \(t.failures) other outcomes, 0 crashes")
        print("  rejections: \(t.errorCases.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        print("  mutations: \(t.mutations.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", "))")
        return t
    }

    func testFuzzGGUF() throws {
        let t = try fuzz("gguf", seeds: Self.ggufSeeds(), json: false, open: { try GGUFReader(file: $0) }, maxElementsPerByte: 8)
        XCTAssertEqual(t.failures, 0)
        XCTAssertEqual(t.accepted + t.rejected + t.failures, t.inputs)
        // The mutations must both keep some files valid and break most: otherwise they test little.
        XCTAssertGreaterThan(t.accepted, t.inputs / 50)
        XCTAssertGreaterThan(t.rejected, t.inputs / 3)
    }

    func testFuzzSafetensors() throws {
        let t = try fuzz("safetensors", seeds: Self.safetensorsSeeds(), json: true, open: { try SafetensorsFile(file: $0) }, maxElementsPerByte: 1)
        XCTAssertEqual(t.failures, 0)
        XCTAssertEqual(t.accepted + t.rejected + t.failures, t.inputs)
        XCTAssertGreaterThan(t.accepted, t.inputs / 50)
        XCTAssertGreaterThan(t.rejected, t.inputs / 3)
    }

    /// The JSON parser alone on random and mutated text: never traps, and agrees with
    /// JSONSerialization about whether text that has no duplicate keys is JSON at all.
    func testFuzzHeaderJSONAgainstFoundation() throws {
        var rng = SplitMix64(seed: Self.seed ^ 0x15)
        let seedText = Array(#"{"a": [1, -2.5e3, true, false, null, "x\n\u00e9"], "b": {"c": {}}, "d": []}"#.utf8)
        var agree = 0, valid = 0, shown = 0
        let alphabet = Array(#"{}[]",:0-.eE\u "#.utf8)
        for _ in 0..<min(Self.iterations, 5000) {
            var b = seedText
            // Mostly one mutation (so a fair share of inputs stays parseable and reaches the
        // readers), sometimes two or three.
        let r = rng.below(20)
        for _ in 0..<(r < 12 ? 1 : r < 17 ? 2 : 3) {
                let p = rng.below(b.count + 1)
                switch rng.below(4) {
                case 0: if p < b.count { b[p] = alphabet[rng.below(alphabet.count)] }
                case 1: b.insert(alphabet[rng.below(alphabet.count)], at: p)
                case 2: if p < b.count { b.remove(at: p) }
                default: if p < b.count { b[p] = UInt8(truncatingIfNeeded: rng.next()) }
                }
            }
            let ours: Bool
            var duplicate = false
            do {
                _ = try b.withUnsafeBytes { try SafetensorsJSONProbe.parse($0) }
                ours = true
            } catch let f as SafetensorsJSONProbe.Failure {
                ours = false
                if case .duplicateKey = f { duplicate = true }
            }
            if duplicate { continue }
            let theirs = (try? JSONSerialization.jsonObject(with: Data(b), options: [.fragmentsAllowed])) != nil
            if ours == theirs { agree += 1 } else {
                // Foundation is lenient about a few things RFC 8259 forbids (show those); the
                // other way round is a bug here.
                let text = String(decoding: b, as: UTF8.self)
                XCTAssertFalse(ours, "ours accepts what Foundation refuses: \(text)")
                if shown < 3 { print("  JSON only Foundation accepts: \(text)"); shown += 1 }
            }
            if ours { valid += 1 }
        }
        print("fuzz header JSON: \(agree) agreements with JSONSerialization, \(valid) valid texts")
    }
}

/// The safetensors JSON parser, reached through the public reader: a header that parses
/// becomes a file whose tensors are then checked. Only parse success matters here.
enum SafetensorsJSONProbe {
    enum Failure: Error { case duplicateKey, other }
    static func parse(_ text: UnsafeRawBufferPointer) throws {
        let file = MappedFile(path: "probe", bytes: GGUFBuilder.le(UInt64(text.count)) + Array(text))
        do {
            _ = try SafetensorsFile(file: file)
        } catch let e as CheckpointError {
            switch e {
            case let .malformedHeader(_, detail):
                if detail.contains("appears twice") { throw Failure.duplicateKey }
                if detail.contains("not valid JSON") || detail.contains("nests deeper") { throw Failure.other }
                return // JSON, but not a safetensors header
            case .invalidName: throw Failure.other
            default: return
            }
        }
    }
}
