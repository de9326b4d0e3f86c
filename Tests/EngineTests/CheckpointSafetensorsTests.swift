// safetensors files and HF directories against the values the safetensors package reads back.
import Engine
import Foundation
import XCTest

final class CheckpointSafetensorsTests: XCTestCase {
    /// Compares every tensor a source holds with the oracle's float32 values, bit for bit
    /// (F16 and BF16 widen to F32 exactly, so nothing less than equality is right).
    private func assertMatches(_ source: TensorSource, _ group: CheckpointManifest.Group, expected: [Float],
                               file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        XCTAssertEqual(Set(source.tensors.keys), Set(group.tensors.map(\.name)), file: file, line: line)
        let storage = ["float32": "F32", "float16": "F16", "bfloat16": "BF16"]
        var n = 0
        for t in group.tensors {
            let e = try source.entry(t.name)
            XCTAssertEqual(e.shape, t.shape, t.name, file: file, line: line)
            XCTAssertEqual(e.storage, storage[t.type], t.name, file: file, line: line)
            let ours = try source.readArray(t.name)
            let off = t.offset ?? 0
            guard ours.count == t.count, off + ours.count <= expected.count else {
                XCTFail("\(t.name): \(ours.count) values, oracle has \(t.count ?? -1)", file: file, line: line); continue
            }
            for i in 0..<ours.count where ours[i].bitPattern != expected[off + i].bitPattern {
                XCTFail("\(t.name)[\(i)]: ours \(ours[i]), safetensors \(expected[off + i])", file: file, line: line)
                break
            }
            n += ours.count
        }
        return n
    }

    func testSingleFileF32F16BF16() throws {
        let m = try CheckpointManifest.load()
        let g = m.safetensors_single
        let f = try SafetensorsFile(path: Fixtures.require("oracle/checkpoints/\(g.file!)"))
        let expected = try NPY.float32(Fixtures.require("oracle/checkpoints/\(g.expected!)"))
        let n = try assertMatches(f, g, expected: expected)
        XCTAssertEqual(f.metadata, ["format": "pt", "note": "cnl fixture"])
        // The special values really are there: ±0, subnormal, infinities.
        let specials = try f.readArray("f16.specials")
        XCTAssertEqual(specials[1].sign, .minus)
        XCTAssertTrue(specials[4].isInfinite)
        XCTAssertEqual(try f.entry("f32.scalar").shape, [])
        XCTAssertEqual(try f.readArray("f32.scalar"), [3.5])
        XCTAssertEqual(try f.entry("f32.empty").shape, [0, 4])
        XCTAssertEqual(try f.readArray("f32.empty"), [])
        print("safetensors single file: \(f.tensors.count) tensors, \(n) values bit-exact")
    }

    /// transformers' save_pretrained output, one file (F16) and sharded with an index (BF16).
    func testHFDirectories() throws {
        let m = try CheckpointManifest.load()
        for g in [m.hf_single, m.hf_sharded] {
            let dir = try Fixtures.require("oracle/checkpoints/\(g.dir!)")
            let hf = try HFDirectory(path: dir)
            let expected = try NPY.float32(Fixtures.require("oracle/checkpoints/\(g.expected!)"))
            let n = try assertMatches(hf, g, expected: expected)
            let cfg = try JSONSerialization.jsonObject(with: hf.configData) as? [String: Any]
            XCTAssertEqual(cfg?["model_type"] as? String, "llama")
            print("HF directory \(g.dir!): \(g.files?.count ?? 0) file(s), \(hf.tensors.count) tensors, \(n) values bit-exact")
        }
        XCTAssertGreaterThan(m.hf_sharded.files?.count ?? 0, 1, "the sharded fixture must have shards")
    }

    /// A file written here (independent of the oracle) with F32, F16, BF16 and an integer tensor:
    /// values come back exactly, the integer tensor is refused by name.
    func testBuiltFileRoundTrip() throws {
        let floats: [Float] = [0, -0.0, 1, -2.5, 65504, 6e-8, .infinity, 3.0e38]
        let bf: [UInt16] = floats.map { UInt16($0.bitPattern >> 16) }
        let bytes = SafetensorsBuilder.file([
            .init(name: "x", dtype: "F32", shape: [8], data: floats.flatMap { GGUFBuilder.le($0.bitPattern) }),
            .init(name: "y", dtype: "F16", shape: [2, 3], data: floats.prefix(6).flatMap { GGUFBuilder.le(f16Bits($0)) }),
            .init(name: "z", dtype: "BF16", shape: [8], data: bf.flatMap { GGUFBuilder.le($0) }),
            .init(name: "k", dtype: "I64", shape: [1], data: GGUFBuilder.le(Int64(5))),
        ])
        let f = try SafetensorsFile(file: MappedFile(path: "built.safetensors", bytes: bytes))
        XCTAssertEqual(f.tensorOrder, ["x", "y", "z", "k"])
        XCTAssertEqual(try f.readArray("x").map(\.bitPattern), floats.map(\.bitPattern))
        XCTAssertEqual(try f.readArray("y"), floats.prefix(6).map { Float(Float16($0)) })
        XCTAssertEqual(try f.readArray("z").map(\.bitPattern), bf.map { UInt32($0) << 16 })
        assertCheckpointError(try f.readArray("k"), names: ["built.safetensors", "'k'", "I64"]) {
            if case .unsupportedDType = $0 { return true }; return false
        }
    }

    /// Escapes in names are decoded (safetensors writes JSON with serde, which may escape).
    func testEscapedNamesAndWhitespace() throws {
        let header = #" { "a\"b\u00e9\ud83d\ude00" : { "dtype" : "F32" , "shape" : [ 1 ] , "data_offsets" : [ 0 , 4 ] } } "#
        let bytes = SafetensorsBuilder.file(header: Array(header.utf8), data: GGUFBuilder.le(Float(1.5).bitPattern))
        let f = try SafetensorsFile(file: MappedFile(path: "esc.safetensors", bytes: bytes))
        XCTAssertEqual(Array(f.tensors.keys), ["a\"bé😀"])
        XCTAssertEqual(try f.readArray("a\"bé😀"), [1.5])
    }
}
