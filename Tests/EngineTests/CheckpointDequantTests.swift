// GGUF dequantization against gguf-py (gguf.quants.dequantize), the independent reference.
import Engine
import Foundation
import XCTest

final class CheckpointDequantTests: XCTestCase {
    /// The types the issue lists; the oracle writes one GGUF file for each.
    static let supported = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]

    /// Every tensor of every per-type fixture: ours vs gguf-py's float32, element by element.
    /// Must be bit-exact or within 1 ulp; prints max |Δ| and max ulp per type.
    func testDequantizationMatchesGGUFPy() throws {
        let manifest = try CheckpointManifest.load()
        XCTAssertEqual(Set(manifest.gguf.keys), Set(Self.supported), "the oracle must cover every supported type")
        var report: [String] = []
        for type in Self.supported {
            guard let group = manifest.gguf[type], let file = group.file, let exp = group.expected else {
                XCTFail("no fixture for \(type)"); continue
            }
            let reader = try GGUFReader(path: Fixtures.require("oracle/checkpoints/\(file)"))
            let expected = try NPY.float32(Fixtures.require("oracle/checkpoints/\(exp)"))
            XCTAssertEqual(reader.tensorOrder, group.tensors.map(\.name), type)
            var maxAbs: Float = 0, maxUlp: UInt32 = 0, n = 0, nonzero = 0
            for t in group.tensors {
                let entry = try reader.entry(t.name)
                XCTAssertEqual(entry.shape, t.shape, "\(type) \(t.name)")
                XCTAssertEqual(entry.storage, type, "\(type) \(t.name)")
                let ours = try reader.readArray(t.name)
                let off = t.offset ?? 0
                XCTAssertEqual(ours.count, t.count, "\(type) \(t.name)")
                guard ours.count == t.count, off + ours.count <= expected.count else { continue }
                for i in 0..<ours.count {
                    let a = ours[i], b = expected[off + i]
                    let u = ulpDistance(a, b)
                    if u > 1 {
                        XCTFail("\(type) \(t.name)[\(i)]: ours \(a) (0x\(String(a.bitPattern, radix: 16))), gguf-py \(b) (0x\(String(b.bitPattern, radix: 16)))")
                        break
                    }
                    maxUlp = max(maxUlp, u)
                    if a.isFinite && b.isFinite { maxAbs = max(maxAbs, abs(a - b)) }
                    if b != 0 { nonzero += 1 }
                    n += 1
                }
            }
            XCTAssertGreaterThan(nonzero, n / 2, "\(type): the fixture should hold mostly non-zero values")
            report.append("\(type): \(n) values, max |Δ| = \(maxAbs), max ulp = \(maxUlp)")
        }
        print("dequantization vs gguf-py:\n  " + report.joined(separator: "\n  "))
    }

    /// The metadata gguf-py's GGUFWriter wrote, as typed values; a custom alignment is honoured.
    func testMetadataWrittenByGGUFPy() throws {
        let manifest = try CheckpointManifest.load()
        let q8 = try GGUFReader(path: Fixtures.require("oracle/checkpoints/\(manifest.gguf["Q8_0"]!.file!)"))
        XCTAssertEqual(q8.version, 3)
        XCTAssertEqual(q8.alignment, 64)
        XCTAssertEqual(try q8.string("general.architecture"), "llama")
        XCTAssertEqual(q8.metadata["test.u32"], .uint32(123456))
        XCTAssertEqual(q8.metadata["test.f32"], .float32(0.25))
        XCTAssertEqual(q8.metadata["test.bool"], .bool(true))
        XCTAssertEqual(try q8.string("test.string"), "héllo ✓")
        XCTAssertEqual(q8.metadata["test.strings"]?.arrayValue?.compactMap(\.stringValue), ["a", "", "ü", "end"])
        XCTAssertEqual(q8.metadata["test.ints"]?.arrayValue?.compactMap(\.intValue), [1, -2, 3])
        for info in q8.tensorInfos.values { XCTAssertEqual(info.fileOffset % 64, 0, info.name) }
        let f32 = try GGUFReader(path: Fixtures.require("oracle/checkpoints/\(manifest.gguf["F32"]!.file!)"))
        XCTAssertEqual(f32.alignment, 32)
    }

    /// Types ggml defines but this reader does not convert: the file opens, lists them, and
    /// reading one fails with `unsupportedDType` naming the file, tensor and type.
    func testUnsupportedTypesOpenButAreRefusedByName() throws {
        let manifest = try CheckpointManifest.load()
        let path = try Fixtures.require("oracle/checkpoints/\(manifest.unsupported.file!)")
        let r = try GGUFReader(path: path)
        XCTAssertEqual(r.tensorOrder, manifest.unsupported.tensors.map(\.name))
        for t in manifest.unsupported.tensors {
            XCTAssertEqual(r.tensors[t.name]?.storage, t.type)
            assertCheckpointError(try r.readArray(t.name), names: [path, t.name, t.type]) {
                if case let .unsupportedDType(p, tensor, dtype) = $0 { return p == path && tensor == t.name && dtype == t.type }
                return false
            }
        }
    }

    // MARK: - The real SmolLM2 GGUF

    struct Summary: Decodable {
        struct Sample: Decodable { var index: Int; var bits: UInt32; var value: Double }
        struct Tensor: Decodable {
            var name: String, type: String, shape: [Int], count: Int
            var sum: Double, sumsq: Double, maxabs: Double
            var bit_hash: String
            var samples: [Sample]
        }
        var tensors: [Tensor]
    }

    /// Every tensor of SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1, Q8_0, F32) against gguf-py: a hash
    /// of all float32 bit patterns (so every value is bit-exact), float64 sum, sum of squares,
    /// max |x| and sampled values.
    func testSmolLM2MatchesGGUFPy() throws {
        let summary = try JSONDecoder().decode(Summary.self, from: Data(contentsOf: URL(fileURLWithPath:
            Fixtures.require("oracle/checkpoints/smollm2_summary.json"))))
        let reader = try GGUFReader(path: Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        XCTAssertEqual(reader.tensorOrder, summary.tensors.map(\.name))
        var buffer = [Float]()
        var perType: [String: (tensors: Int, values: Int, hashOK: Int, maxAbs: Double, maxRel: Double)] = [:]
        for t in summary.tensors {
            let e = try reader.entry(t.name)
            XCTAssertEqual(e.shape, t.shape, t.name)
            XCTAssertEqual(e.storage, t.type, t.name)
            buffer = [Float](repeating: .nan, count: t.count)
            try buffer.withUnsafeMutableBufferPointer { try reader.read(t.name, into: $0) }
            var hash: UInt64 = 0, sum = 0.0, sumsq = 0.0, maxabs = 0.0
            for (i, v) in buffer.enumerated() {
                hash &+= UInt64(v.bitPattern) &* (UInt64(i) &* 2 &+ 1)
                let d = Double(v)
                sum += d; sumsq += d * d; maxabs = max(maxabs, abs(d))
            }
            var s = perType[t.type] ?? (0, 0, 0, 0, 0)
            s.tensors += 1
            s.values += t.count
            if String(hash) == t.bit_hash { s.hashOK += 1 } else { XCTFail("\(t.name): float32 bit hash differs from gguf-py's") }
            for sample in t.samples {
                let ours = buffer[sample.index]
                XCTAssertLessThanOrEqual(ulpDistance(ours, Float(bitPattern: sample.bits)), 1, "\(t.name)[\(sample.index)]")
                s.maxAbs = max(s.maxAbs, abs(Double(ours) - sample.value))
            }
            // Summation order differs from numpy's pairwise sum: equal to ~1e-12 relative.
            let scale = max(1, sumsq.squareRoot() * Double(t.count).squareRoot())
            XCTAssertEqual(sum, t.sum, accuracy: 1e-9 * scale, t.name)
            XCTAssertEqual(sumsq, t.sumsq, accuracy: 1e-9 * max(1, t.sumsq), t.name)
            XCTAssertEqual(maxabs, t.maxabs, t.name)
            s.maxRel = max(s.maxRel, abs(sum - t.sum) / scale)
            perType[t.type] = s
        }
        XCTAssertEqual(Set(perType.keys), ["Q4_1", "Q8_0", "F32"])
        print("SmolLM2 vs gguf-py (\(summary.tensors.count) tensors):")
        for (type, s) in perType.sorted(by: { $0.key < $1.key }) {
            print("  \(type): \(s.tensors) tensors, \(s.values) values, bit hash equal \(s.hashOK)/\(s.tensors), max |Δ| of samples \(s.maxAbs)")
        }
    }

    /// Loading every tensor of the real model into Float buffers: time and peak memory.
    func testSmolLM2LoadsAllTensorsTimed() throws {
        let path = try Fixtures.require("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let t0 = Date()
        let reader = try GGUFReader(path: path)
        let tOpen = Date().timeIntervalSince(t0)
        let total = reader.tensors.values.reduce(0) { $0 + $1.elementCount }
        let weights = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
        defer { weights.deallocate() }
        var offset = 0
        let t1 = Date()
        for name in reader.tensorOrder {
            let n = reader.tensors[name]!.elementCount
            try reader.read(name, into: UnsafeMutableBufferPointer(rebasing: weights[offset..<offset + n]))
            offset += n
        }
        let tRead = Date().timeIntervalSince(t1)
        XCTAssertEqual(offset, total)
        XCTAssertGreaterThan(total, 130_000_000)
        var finite = true
        for v in weights where !v.isFinite { finite = false; break }
        XCTAssertTrue(finite, "every weight is finite")
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        print(String(format: "SmolLM2 load: open+metadata %.1f ms, %d tensors, %d floats (%.0f MB) read in %.0f ms (%.0f M floats/s); peak RSS %.0f MB",
                     tOpen * 1000, reader.tensors.count, total, Double(total * 4) / 1e6, tRead * 1000, Double(total) / tRead / 1e6,
                     Double(usage.ru_maxrss) / 1024))
    }
}
