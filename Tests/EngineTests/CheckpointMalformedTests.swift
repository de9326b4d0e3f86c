// Malformed checkpoints: each is refused with its own typed CheckpointError naming file and key.
import Engine
import Foundation
import XCTest

final class CheckpointMalformedTests: XCTestCase {
    private func gguf(_ bytes: [UInt8], _ path: String = "bad.gguf") throws -> GGUFReader {
        try GGUFReader(file: MappedFile(path: path, bytes: bytes))
    }

    private func st(_ bytes: [UInt8], _ path: String = "bad.safetensors") throws -> SafetensorsFile {
        try SafetensorsFile(file: MappedFile(path: path, bytes: bytes))
    }

    private func st(header: String, data: [UInt8] = [UInt8](repeating: 0, count: 24)) throws -> SafetensorsFile {
        try st(SafetensorsBuilder.file(header: Array(header.utf8), data: data))
    }

    private func isTruncated(_ what: String) -> (CheckpointError) -> Bool {
        { if case let .truncated(_, w, _, _, _) = $0 { return w.contains(what) }; return false }
    }

    private func isMalformed(_ detail: String) -> (CheckpointError) -> Bool {
        { if case let .malformedHeader(_, d) = $0 { return d.contains(detail) }; return false }
    }

    private func isOutOfBounds(_ tensor: String) -> (CheckpointError) -> Bool {
        { if case let .tensorOutOfBounds(_, t, _) = $0 { return t == tensor }; return false }
    }

    private func isBadMetadata(_ key: String, _ detail: String = "") -> (CheckpointError) -> Bool {
        { if case let .badMetadata(_, k, d) = $0 { return k == key && d.contains(detail) }; return false }
    }

    private func isUnsupported(_ tensor: String, _ dtype: String) -> (CheckpointError) -> Bool {
        { if case let .unsupportedDType(_, t, d) = $0 { return t == tensor && d.contains(dtype) }; return false }
    }

    private func isInvalidName(_ detail: String) -> (CheckpointError) -> Bool {
        { if case let .invalidName(_, d) = $0 { return d.contains(detail) }; return false }
    }

    // MARK: - The sample files are valid

    func testSamplesParseAndRead() throws {
        for version: UInt32 in [2, 3] {
            let r = try gguf(GGUFBuilder.sample(version: version).build().bytes)
            XCTAssertEqual(r.version, Int(version))
            XCTAssertEqual(r.tensorOrder, ["w.f32", "w.f16", "w.q4_0", "w.q8_0", "w.q4_k", "w.q6_k", "w.q2_k"])
            XCTAssertEqual(try r.readArray("w.f32"), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
            XCTAssertEqual(try r.readArray("w.f16"), [1, -2, 0.5, 65504])
            XCTAssertEqual(r.tensors["w.q4_0"]?.shape, [2, 32])
            for name in ["w.q4_0", "w.q8_0", "w.q4_k", "w.q6_k"] { XCTAssertTrue(try r.readArray(name).allSatisfy(\.isFinite)) }
            XCTAssertEqual(r.metadata["test.tokens"]?.arrayValue?.compactMap(\.stringValue), ["<s>", "</s>", "ü", ""])
        }
        let s = try st(SafetensorsBuilder.sample())
        XCTAssertEqual(s.tensorOrder, ["a.f32", "b.f16", "c.bf16", "d.i32", "e.empty"])
        XCTAssertEqual(s.metadata, ["format": "pt"])
        // Zero-sized GGUF dimensions are legal (llama.cpp accepts them): nothing to read.
        var g = GGUFBuilder()
        g.addTensor("empty", shape: [0, 32], type: .q8_0, data: [])
        g.addTensor("after", shape: [2], type: .f32, data: GGUFBuilder.le(Float(1).bitPattern) + GGUFBuilder.le(Float(2).bitPattern))
        let r = try gguf(g.build().bytes)
        XCTAssertEqual(try r.readArray("empty"), [])
        XCTAssertEqual(try r.readArray("after"), [1, 2])
    }

    // MARK: - Truncation

    /// The sample GGUF cut at points inside every part of the file, written to disk and opened
    /// by path: header cuts are `.truncated` naming what was being read, data cuts are
    /// `.tensorOutOfBounds` naming the first tensor that no longer fits.
    func testGGUFTruncatedAtManyPoints() throws {
        let built = GGUFBuilder.sample().build()
        let b = built.bytes
        let dir = try makeTempDir("trunc")
        defer { try? FileManager.default.removeItem(at: dir) }
        let str = built.valueStart["test.string"]!, tok = built.valueStart["test.tokens"]!
        let cases: [(cut: Int, names: [String], match: (CheckpointError) -> Bool)] = [
            (0, ["GGUF magic"], isTruncated("GGUF magic")),
            (2, ["GGUF magic"], isTruncated("GGUF magic")),
            (6, ["GGUF version"], isTruncated("GGUF version")),
            (12, ["tensor count"], isTruncated("tensor count")),
            (20, ["metadata count"], isTruncated("metadata count")),
            (30, ["6 metadata entries"], isTruncated("6 metadata entries")),
            (str + 12, ["test.string"], isTruncated("value of 'test.string'")),
            (tok + 12 + 8 + 3 + 4, ["test.tokens"], isTruncated("'test.tokens'")),
            (built.tensorInfoStart[6] + 8 + 6 + 4 + 3, ["dimension 0 of tensor 'w.q2_k'"], isTruncated("dimension 0 of tensor 'w.q2_k'")),
            (built.offsetFields[6] + 4, ["data offset of tensor 'w.q2_k'"], isTruncated("data offset of tensor 'w.q2_k'")),
            (built.dataOffsets[2] + 5, ["'w.q4_0'"], isOutOfBounds("w.q4_0")),
            (b.count - 1, ["'w.q2_k'"], isOutOfBounds("w.q2_k")),
        ]
        for (i, c) in cases.enumerated() {
            let path = dir.appendingPathComponent("cut\(i).gguf").path
            try Data(b.prefix(c.cut)).write(to: URL(fileURLWithPath: path))
            assertCheckpointError(try GGUFReader(path: path), names: [path] + c.names, c.match)
        }
        XCTAssertNoThrow(try gguf(b))
    }

    func testSafetensorsTruncatedAtManyPoints() throws {
        let b = SafetensorsBuilder.sample()
        let headerLength = Int(b.readLE(UInt64.self, at: 0))
        let dir = try makeTempDir("trunc")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(cut: Int, names: [String], match: (CheckpointError) -> Bool)] = [
            (0, ["safetensors header length"], isTruncated("safetensors header length")),
            (5, ["safetensors header length"], isTruncated("safetensors header length")),
            (8, ["header length \(headerLength) is past the end"], isMalformed("past the end")),
            (8 + headerLength / 2, ["past the end"], isMalformed("past the end")),
            (8 + headerLength + 30, ["'b.f16'"], isOutOfBounds("b.f16")),
            (b.count - 1, ["'d.i32'"], isOutOfBounds("d.i32")),
        ]
        for (i, c) in cases.enumerated() {
            let path = dir.appendingPathComponent("cut\(i).safetensors").path
            try Data(b.prefix(c.cut)).write(to: URL(fileURLWithPath: path))
            assertCheckpointError(try SafetensorsFile(path: path), names: [path] + c.names, c.match)
        }
    }

    // MARK: - GGUF header

    func testGGUFMagicAndVersion() throws {
        var b = GGUFBuilder.sample().build().bytes
        b[3] = UInt8(ascii: "G")
        assertCheckpointError(try gguf(b), names: ["bad.gguf", "magic"], isMalformed("magic"))
        var g = GGUFBuilder.sample()
        g.version = UInt32(3).byteSwapped
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "big-endian"], isMalformed("big-endian"))
        for v: UInt32 in [1, 4, 0xFFFF_FFFF] {
            var g = GGUFBuilder.sample()
            g.version = v
            assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "version \(v)"]) {
                if case let .unsupportedVersion(_, found) = $0 { return found == Int(v) }; return false
            }
        }
    }

    /// Counts no file can hold are refused before anything is allocated from them.
    func testAbsurdCounts() throws {
        var g = GGUFBuilder.sample()
        g.tensorCountOverride = 1 << 60
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "tensor infos", "1152921504606846976"], isMalformed("tensor infos"))
        g = GGUFBuilder.sample()
        g.kvCountOverride = 1 << 60
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "metadata entries"], isMalformed("metadata entries"))
        g = GGUFBuilder.sample()
        g.kvCountOverride = UInt64.max
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf"], isMalformed("metadata entries"))
        // Plausible counts that the bytes cannot hold: the file is truncated.
        g = GGUFBuilder.sample()
        g.tensorCountOverride = 1000
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "1000 tensor infos"], isTruncated("1000 tensor infos"))

        // An array count of 2^60 and one just beyond the bytes; a string length of 2^60.
        let built = GGUFBuilder.sample().build()
        var b = built.bytes
        b.writeLE(UInt64(1) << 60, at: built.valueStart["test.ints"]! + 4)
        assertCheckpointError(try gguf(b), names: ["bad.gguf", "test.ints"], isBadMetadata("test.ints", "1152921504606846976"))
        b = built.bytes
        b.writeLE(UInt64(b.count), at: built.valueStart["test.ints"]! + 4)
        assertCheckpointError(try gguf(b), names: ["bad.gguf", "test.ints"], isTruncated("array 'test.ints'"))
        b = built.bytes
        b.writeLE(UInt64(1) << 60, at: built.valueStart["test.string"]!)
        assertCheckpointError(try gguf(b), names: ["bad.gguf", "test.string"], isTruncated("value of 'test.string'"))
        b = built.bytes
        b.writeLE(UInt64.max, at: built.tensorInfoStart[3])
        assertCheckpointError(try gguf(b), names: ["bad.gguf", "name of tensor #3"], isTruncated("name of tensor #3"))
    }

    func testGGUFTensorInfoErrors() throws {
        func one(_ name: String = "t", ne: [UInt64], type: UInt32 = 0, data: [UInt8] = [UInt8](repeating: 0, count: 64)) -> [UInt8] {
            var g = GGUFBuilder()
            g.tensors = [.init(name: Array(name.utf8), ne: ne, typeID: type, data: data)]
            return g.build().bytes
        }
        assertCheckpointError(try gguf(one(ne: [])), names: ["bad.gguf", "'t'", "0 dimensions"], isMalformed("0 dimensions"))
        assertCheckpointError(try gguf(one(ne: [1, 1, 1, 1, 1])), names: ["'t'", "5 dimensions"], isMalformed("5 dimensions"))
        assertCheckpointError(try gguf(one(ne: [1 << 50])), names: ["'t'", "dimension 0"], isMalformed("dimension 0"))
        assertCheckpointError(try gguf(one(ne: [1 << 39, 1 << 39])), names: ["'t'", "too many elements"], isMalformed("too many elements"))
        // Unknown type id (99; 4 was Q4_2, removed from ggml): cannot be sized, refused at open.
        for id: UInt32 in [99, 4, 0xFFFF_FFFF] {
            assertCheckpointError(try gguf(one(ne: [4], type: id)), names: ["bad.gguf", "'t'", "type id \(id)"], isUnsupported("t", "unknown ggml type id \(id)"))
        }
        // A row that is not whole blocks.
        assertCheckpointError(try gguf(one(ne: [16], type: GGMLType.q4_0.rawValue)), names: ["'t'", "Q4_0 block size 32"], isMalformed("block size"))
    }

    func testGGUFOffsetsOutOfBoundsAndAlignment() throws {
        let built = GGUFBuilder.sample().build()
        var b = built.bytes
        b.writeLE(UInt64(1 << 20), at: built.offsetFields[3])
        assertCheckpointError(try gguf(b), names: ["bad.gguf", "'w.q8_0'", "outside the file"], isOutOfBounds("w.q8_0"))
        b = built.bytes
        b.writeLE(UInt64(1) << 62, at: built.offsetFields[3])
        assertCheckpointError(try gguf(b), names: ["'w.q8_0'", "data offset"], isOutOfBounds("w.q8_0"))
        b = built.bytes
        b.writeLE(b.readLE(UInt64.self, at: built.offsetFields[3]) + 4, at: built.offsetFields[3])
        assertCheckpointError(try gguf(b), names: ["'w.q8_0'", "alignment 32"], isOutOfBounds("w.q8_0"))

        // general.alignment: not a power of two, zero, huge, not an integer.
        for (type, payload) in [(UInt32(4), GGUFBuilder.le(UInt32(48))), (4, GGUFBuilder.le(UInt32(0))),
                                (4, GGUFBuilder.le(UInt32(1 << 30))), (8, GGUFBuilder.str("32")), (7, [1])] {
            var g = GGUFBuilder.sample()
            g.add("general.alignment", type: type, payload)
            assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "general.alignment"], isBadMetadata("general.alignment", "power of two"))
        }
        // A valid custom alignment is honoured.
        var g = GGUFBuilder.sample()
        g.alignment = 128
        g.add("general.alignment", u32: 128)
        let r = try gguf(g.build().bytes)
        XCTAssertEqual(r.alignment, 128)
        XCTAssertEqual(try r.readArray("w.f32"), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    }

    func testGGUFMissingTensorWrongShapeUnsupportedType() throws {
        let r = try gguf(GGUFBuilder.sample().build().bytes, "model.gguf")
        assertCheckpointError(try r.readArray("nope"), names: ["model.gguf", "'nope'"]) {
            if case let .missingTensor(p, t) = $0 { return p == "model.gguf" && t == "nope" }; return false
        }
        assertCheckpointError(try r.entry("nope"), names: ["model.gguf", "'nope'"]) {
            if case .missingTensor = $0 { return true }; return false
        }
        var small = [Float](repeating: 0, count: 5)
        assertCheckpointError(try small.withUnsafeMutableBufferPointer { try r.read("w.f32", into: $0) },
                              names: ["model.gguf", "'w.f32'", "[2, 3]", "[5]"]) {
            if case let .shapeMismatch(_, t, expected, found) = $0 { return t == "w.f32" && expected == [5] && found == [2, 3] }; return false
        }
        var empty = [Float]()
        assertCheckpointError(try empty.withUnsafeMutableBufferPointer { try r.read("w.q4_0", into: $0) }, names: ["'w.q4_0'"]) {
            if case .shapeMismatch = $0 { return true }; return false
        }
        assertCheckpointError(try r.readArray("w.q2_k"), names: ["model.gguf", "'w.q2_k'", "Q2_K"], isUnsupported("w.q2_k", "Q2_K"))
    }

    func testGGUFNonUTF8Names() throws {
        var g = GGUFBuilder.sample()
        g.tensors[2].name = [0x77, 0x2E, 0xC3, 0x28] // "w." then an invalid 2-byte sequence
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "name of tensor #2", "UTF-8"], isInvalidName("name of tensor #2"))
        g = GGUFBuilder.sample()
        g.metadata[1].key = [0xFF, 0xFE]
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "metadata key #1", "UTF-8"], isInvalidName("metadata key #1"))
        g = GGUFBuilder.sample()
        g.add("test.bad", type: 8, GGUFBuilder.str([0xED, 0xA0, 0x80])) // an encoded surrogate
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "test.bad"], isInvalidName("value of 'test.bad'"))
    }

    func testGGUFDuplicateNames() throws {
        var g = GGUFBuilder.sample()
        g.tensors[4].name = Array("w.f32".utf8)
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "'w.f32' appears twice"], isMalformed("'w.f32' appears twice"))
        g = GGUFBuilder.sample()
        g.add("test.count", u32: 8)
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "'test.count' appears twice"], isMalformed("'test.count' appears twice"))
    }

    func testGGUFMetadataValueErrors() throws {
        // Arrays of arrays: llama.cpp refuses them, so does this reader.
        var g = GGUFBuilder.sample()
        g.add("test.nested", type: 9, GGUFBuilder.le(UInt32(9)) + GGUFBuilder.le(UInt64(1)) + GGUFBuilder.le(UInt32(4)) + GGUFBuilder.le(UInt64(1)) + GGUFBuilder.le(UInt32(7)))
        assertCheckpointError(try gguf(g.build().bytes), names: ["bad.gguf", "test.nested", "arrays of arrays"], isBadMetadata("test.nested", "arrays of arrays"))
        // Unknown value type, unknown array element type, a bool that is neither 0 nor 1.
        g = GGUFBuilder.sample()
        g.add("test.weird", type: 13, [0, 0, 0, 0])
        assertCheckpointError(try gguf(g.build().bytes), names: ["test.weird", "unknown value type 13"], isBadMetadata("test.weird", "unknown value type 13"))
        g = GGUFBuilder.sample()
        g.add("test.weird", type: 9, GGUFBuilder.le(UInt32(77)) + GGUFBuilder.le(UInt64(0)))
        assertCheckpointError(try gguf(g.build().bytes), names: ["test.weird", "element type 77"], isBadMetadata("test.weird", "element type 77"))
        g = GGUFBuilder.sample()
        g.add("test.flag", type: 7, [2])
        assertCheckpointError(try gguf(g.build().bytes), names: ["test.flag", "bool byte is 2"], isBadMetadata("test.flag", "bool"))
        // Typed accessors name the key.
        let r = try gguf(GGUFBuilder.sample().build().bytes)
        assertCheckpointError(try r.string("test.count"), names: ["bad.gguf", "test.count"], isBadMetadata("test.count", "expected a string"))
        assertCheckpointError(try r.int("no.such.key"), names: ["bad.gguf", "no.such.key"]) {
            if case let .missingMetadata(_, k) = $0 { return k == "no.such.key" }; return false
        }
    }

    // MARK: - safetensors header

    func testSafetensorsHeaderLength() throws {
        let b = SafetensorsBuilder.sample()
        for bad in [UInt64(b.count), UInt64(b.count - 7), UInt64(1) << 60, UInt64.max] {
            var m = b
            m.writeLE(bad, at: 0)
            assertCheckpointError(try st(m), names: ["bad.safetensors", "header length \(bad) is past the end"], isMalformed("past the end"))
        }
        // Header that is not JSON, not an object, or has trailing garbage.
        assertCheckpointError(try st(header: "{]"), names: ["bad.safetensors", "not valid JSON", "byte 9"], isMalformed("not valid JSON"))
        assertCheckpointError(try st(header: "[1, 2]"), names: ["bad.safetensors", "not an object"], isMalformed("not an object"))
        assertCheckpointError(try st(header: "{} x"), names: ["bad.safetensors", "end of the JSON text"], isMalformed("not valid JSON"))
        assertCheckpointError(try st(header: ""), names: ["bad.safetensors"], isMalformed("not valid JSON"))
        assertCheckpointError(try st(header: #"{"__metadata__": [1]}"#), names: ["'__metadata__'"], isMalformed("__metadata__"))
        assertCheckpointError(try st(header: #"{"__metadata__": {"k": 1}}"#), names: ["'k'"], isMalformed("not a string"))
        assertCheckpointError(try st(header: #"{"a": 5}"#), names: ["'a'", "not an object"], isMalformed("'a' is a number"))
        assertCheckpointError(try st(header: #"{"a": {"shape": [1], "data_offsets": [0, 4]}}"#), names: ["'a'", "dtype"], isMalformed("'dtype'"))
    }

    func testSafetensorsOffsetsOutOfBounds() throws {
        let tensor = { (offs: String) in #"{"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": \#(offs)}}"# }
        assertCheckpointError(try st(header: tensor("[0, 400]")), names: ["bad.safetensors", "'a'", "[0, 400]", "24 bytes"], isOutOfBounds("a"))
        assertCheckpointError(try st(header: tensor("[8, 4]")), names: ["'a'"], isOutOfBounds("a"))
        assertCheckpointError(try st(header: tensor("[-4, 20]")), names: ["'a'"], isOutOfBounds("a"))
        assertCheckpointError(try st(header: tensor("[0, 4611686018427387904]")), names: ["'a'"], isOutOfBounds("a"))
        // Not integers (a float, beyond Int64, a string): refused as malformed, naming the tensor.
        for offs in ["[0, 24.0]", "[0, 1e30]", "[0, 99999999999999999999]", #"["0", 24]"#, "[0]", "[0, 24, 48]", "5"] {
            assertCheckpointError(try st(header: tensor(offs)), names: ["'a'", "data_offsets"], isMalformed("data_offsets"))
        }
        // The span disagrees with dtype × shape.
        assertCheckpointError(try st(header: tensor("[0, 20]")), names: ["'a'", "spans 20 bytes", "needs 24"], isMalformed("spans 20 bytes"))
    }

    func testSafetensorsShapesAndNestedArrays() throws {
        let tensor = { (shape: String) in #"{"a": {"dtype": "F32", "shape": \#(shape), "data_offsets": [0, 24]}}"# }
        for shape in ["[[2], [3]]", "[2, [3]]", "[-1, 6]", "[1125899906842624]", "[2.5]", "[\"2\"]", "{}", "null"] {
            assertCheckpointError(try st(header: tensor(shape)), names: ["bad.safetensors", "'a'", "shape"], isMalformed("'a'"))
        }
        assertCheckpointError(try st(header: tensor("[1073741824, 1073741824]")), names: ["'a'", "too many elements"], isMalformed("too many elements"))
        // Deep nesting anywhere in the header is bounded.
        let deep = #"{"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24], "x": "# + String(repeating: "[", count: 200) + String(repeating: "]", count: 200) + "}}"
        assertCheckpointError(try st(header: deep), names: ["bad.safetensors", "nests deeper"], isMalformed("nests deeper"))
    }

    func testSafetensorsDTypes() throws {
        let tensor = { (dtype: String) in #"{"a": {"dtype": "\#(dtype)", "shape": [6], "data_offsets": [0, 24]}}"# }
        for dtype in ["Q7", "F4", "f32", "BF8"] {
            assertCheckpointError(try st(header: tensor(dtype)), names: ["bad.safetensors", "'a'", "dtype \(dtype)"], isUnsupported("a", dtype))
        }
        // Known non-float dtypes open; reading one as Float is refused by name.
        let i32 = try st(header: tensor("I32"))
        assertCheckpointError(try i32.readArray("a"), names: ["bad.safetensors", "'a'", "I32"], isUnsupported("a", "I32"))
        let u8 = try st(header: #"{"a": {"dtype": "F8_E4M3", "shape": [6], "data_offsets": [0, 6]}}"#)
        assertCheckpointError(try u8.readArray("a"), names: ["'a'", "F8_E4M3"], isUnsupported("a", "F8_E4M3"))
    }

    func testSafetensorsNonUTF8AndDuplicateNames() throws {
        let good = #"{"dtype": "F32", "shape": [6], "data_offsets": [0, 24]}"#
        var header = Array(#"{"ok": "#.utf8) + Array(good.utf8) + Array(#", "bad"#.utf8) + [0xC3, 0x28] + Array(#"": "#.utf8) + Array(good.utf8) + [UInt8(ascii: "}")]
        assertCheckpointError(try st(SafetensorsBuilder.file(header: header, data: [UInt8](repeating: 0, count: 24))),
                              names: ["bad.safetensors", "UTF-8", "byte"], isInvalidName("not valid UTF-8"))
        // A lone surrogate written as an escape is not a valid name either.
        assertCheckpointError(try st(header: #"{"x\ud800": "# + good + "}"), names: ["bad.safetensors", "UTF-8"], isInvalidName("not valid UTF-8"))
        header = Array((#"{"a": "# + good + #", "b": "# + good + #", "a": "# + good + "}").utf8)
        assertCheckpointError(try st(SafetensorsBuilder.file(header: header, data: [UInt8](repeating: 0, count: 24))),
                              names: ["bad.safetensors", "tensor 'a' appears twice"], isMalformed("tensor 'a' appears twice"))
    }

    func testSafetensorsMissingTensorAndWrongShape() throws {
        let f = try st(SafetensorsBuilder.sample(), "model.safetensors")
        assertCheckpointError(try f.readArray("lm_head.weight"), names: ["model.safetensors", "'lm_head.weight'"]) {
            if case let .missingTensor(_, t) = $0 { return t == "lm_head.weight" }; return false
        }
        var wrong = [Float](repeating: 0, count: 7)
        assertCheckpointError(try wrong.withUnsafeMutableBufferPointer { try f.read("a.f32", into: $0) },
                              names: ["model.safetensors", "'a.f32'", "[2, 3]", "[7]"]) {
            if case let .shapeMismatch(_, t, e, found) = $0 { return t == "a.f32" && e == [7] && found == [2, 3] }; return false
        }
    }

    // MARK: - HF directories

    func testHFDirectoryErrors() throws {
        let dir = try makeTempDir("hf")
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: dir.appendingPathComponent(name)) }
        func write(_ name: String, _ text: String) throws { try write(name, Array(text.utf8)) }
        func remove(_ name: String) { try? FileManager.default.removeItem(at: dir.appendingPathComponent(name)) }
        let one = { (name: String) in
            SafetensorsBuilder.file([.init(name: name, dtype: "F32", shape: [1], data: GGUFBuilder.le(Float(1).bitPattern))])
        }
        let index = dir.appendingPathComponent("model.safetensors.index.json").path

        assertCheckpointError(try HFDirectory(path: dir.path), names: ["config.json"]) {
            if case .cannotOpen = $0 { return true }; return false
        }
        try write("config.json", #"{"model_type": "llama"}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: [dir.path, "model.safetensors.index.json"]) {
            if case .cannotOpen = $0 { return true }; return false
        }
        try write("s1.safetensors", one("a"))
        try write("s2.safetensors", one("b"))
        try write("model.safetensors.index.json", #"{"metadata": {}, "weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}"#)
        let ok = try HFDirectory(path: dir.path)
        XCTAssertEqual(Set(ok.tensors.keys), ["a", "b"])
        XCTAssertEqual(try ok.readArray("b"), [1])
        assertCheckpointError(try ok.readArray("c"), names: [dir.path, "'c'"]) {
            if case .missingTensor = $0 { return true }; return false
        }

        // The index names a tensor its shard does not have.
        try write("model.safetensors.index.json", #"{"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: ["s1.safetensors", "'b'"]) {
            if case let .missingTensor(p, t) = $0 { return p.hasSuffix("s1.safetensors") && t == "b" }; return false
        }
        // The same tensor in two shards.
        try write("s2.safetensors", one("a"))
        try write("model.safetensors.index.json", #"{"weight_map": {"a": "s1.safetensors", "x": "s2.safetensors"}}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: ["'x'"]) {
            if case let .missingTensor(_, t) = $0 { return t == "x" }; return false
        }
        try write("model.safetensors.index.json", #"{"weight_map": {"a": "s1.safetensors", "a2": "s2.safetensors"}}"#)
        try write("s2.safetensors", SafetensorsBuilder.file([
            .init(name: "a", dtype: "F32", shape: [1], data: GGUFBuilder.le(Float(1).bitPattern)),
            .init(name: "a2", dtype: "F32", shape: [1], data: GGUFBuilder.le(Float(1).bitPattern)),
        ]))
        assertCheckpointError(try HFDirectory(path: dir.path), names: ["s2.safetensors", "'a' is in two shards"], isMalformed("'a' is in two shards"))
        // Shard names that leave the directory, a missing shard, a broken or duplicated index.
        for shard in ["../s1.safetensors", "..", ""] {
            try write("model.safetensors.index.json", #"{"weight_map": {"a": "\#(shard)"}}"#)
            assertCheckpointError(try HFDirectory(path: dir.path), names: [index, "shard name '\(shard)'"], isMalformed("same directory"))
        }
        try write("model.safetensors.index.json", #"{"weight_map": {"a": "s9.safetensors"}}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: ["s9.safetensors"]) {
            if case .cannotOpen = $0 { return true }; return false
        }
        try write("model.safetensors.index.json", #"{"weight_map": {"a": "s1.safetensors", "a": "s1.safetensors"}}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: [index, "'a' appears twice"], isMalformed("appears twice"))
        try write("model.safetensors.index.json", #"{"weight_map": ["s1.safetensors"]}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: [index, "weight_map"], isMalformed("weight_map"))
        try write("model.safetensors.index.json", #"{"weight_map": {"a": 1}}"#)
        assertCheckpointError(try HFDirectory(path: dir.path), names: [index, "'a'"], isMalformed("not a shard file name"))
        try write("model.safetensors.index.json", "{\"weight_map\": {\"a\": \"s1.safetensors\"")
        assertCheckpointError(try HFDirectory(path: dir.path), names: [index, "not valid JSON"], isMalformed("not valid JSON"))
        remove("model.safetensors.index.json")
        // A directory given as a single file.
        assertCheckpointError(try SafetensorsFile(path: dir.path), names: [dir.path, "directory"]) {
            if case .cannotOpen = $0 { return true }; return false
        }
        assertCheckpointError(try GGUFReader(path: dir.appendingPathComponent("none.gguf").path), names: ["none.gguf"]) {
            if case .cannotOpen = $0 { return true }; return false
        }
    }
}
