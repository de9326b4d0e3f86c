// Checkpoint files: exact round trip; truncation, flipped bits and foreign identities are refused.
import Foundation
import XCTest
import Shard

final class RunCheckpointTests: XCTestCase {
    func sample() throws -> RunCheckpoint {
        var sums = ScoreAccumulator(scoreCount: 50, buckets: 3)
        var rng = SystemRandomNumberGenerator()
        for i in 0..<7 { try sums.add((0..<50).map { _ in Double.random(in: -1e-2...1e-2, using: &rng) }, bucket: i % 3) }
        let header = RunCheckpoint.Header(identity: ["model (sha256)": "abc", "steps": "19"], generation: 2, rank: 1, ranks: 3,
                                          scoreCount: 50, buckets: 3, finished: (0..<7).map { FinishedSample(index: 10 + $0) })
        return RunCheckpoint(header: header, sums: sums)
    }

    func temp() -> String { FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID().uuidString).cnlck").path }

    func testRoundTripIsExact() throws {
        let c = try sample()
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try c.write(to: path)
        let back = try RunCheckpoint.read(path: path)
        XCTAssertEqual(back, c)
        XCTAssertFalse(FileManager.default.fileExists(atPath: AtomicFile.temporaryPath(for: path)))
    }

    func testEveryTruncationAndManyBitFlipsAreDetected() throws {
        let bytes = try sample().encoded()
        let path = temp()
        defer { try? FileManager.default.removeItem(atPath: path) }
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try RunCheckpoint.read(path: path), "truncated to \(cut)") { e in
                guard case CheckpointFileError.corrupt(let p, _) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(p, path)
            }
        }
        // 300 single-bit flips spread over the whole file (header, payload and checksum).
        for k in 0..<300 {
            var flipped = bytes
            let i = (k * 7919) % bytes.count
            flipped[i] ^= UInt8(1 << (k % 8))
            try flipped.write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try RunCheckpoint.read(path: path), "bit flip at byte \(i)")
        }
    }

    func testDifferencesNameEachKey() {
        let d = RunCheckpoint.differences(["steps": "19", "seed": "0", "model": "a"], ["steps": "3", "seed": "0", "model": "a"])
        XCTAssertEqual(d, ["steps (this run: 19, checkpoint: 3)"])
        XCTAssertTrue(RunCheckpoint.differences(["a": "1"], ["a": "1"]).isEmpty)
    }

    func testStorePrecisions() throws {
        let v: [Double] = [1, -2.5, 1e-3, 0.1, 3.0e-8, 0]
        XCTAssertEqual(StorePrecision.f64.decode(StorePrecision.f64.encode(v)), v)
        XCTAssertEqual(StorePrecision.f32.decode(StorePrecision.f32.encode(v)), v.map { Double(Float($0)) })
        // bfloat16: the top 16 bits of the float, rounded to nearest even (as torch does).
        XCTAssertEqual(StorePrecision.bfloat16(1), 0x3F80)
        XCTAssertEqual(StorePrecision.bfloat16(Float(bitPattern: 0x3F80_8000)), 0x3F80)   // tie → even
        XCTAssertEqual(StorePrecision.bfloat16(Float(bitPattern: 0x3F81_8000)), 0x3F82)   // tie → even (up)
        XCTAssertEqual(StorePrecision.bfloat16(Float(bitPattern: 0x3F80_8001)), 0x3F81)
        let back = StorePrecision.bf16.decode(StorePrecision.bf16.encode(v))
        for (a, b) in zip(v, back) { XCTAssertEqual(a, b, accuracy: abs(a) / 128) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try PerSampleStore(directory: dir, name: "s.zst", precision: .f64)
        let e0 = try store.append(index: 0, scores: v)
        let e1 = try store.append(index: 1, scores: v.map { -$0 })
        try store.flush()
        XCTAssertEqual(try PerSampleStore.read(e1, directory: dir, precision: .f64, count: v.count), v.map { -$0 })
        XCTAssertEqual(try PerSampleStore.read(e0, directory: dir, precision: .f64, count: v.count), v)
    }
}
