// Output safetensors load in Python (safetensors.numpy.load_file) with the exact values written.
import Coordinator
import Foundation
import XCTest

final class SafetensorsWriterTests: XCTestCase {
    func testPythonLoadsWhatWeWrite() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let python = root.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return XCTFail("missing \(python): run `make fixtures` (scripts/setup.sh --oracle)")
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("scores.safetensors").path
        let scores = (0..<6).map { Double($0) * 0.1 - 0.25 + 1e-17 }
        try SafetensorsWriter.write([
            .float64("score", scores, shape: [2, 3]),
            .uint8("mask_sigma6", [0, 1, 0, 0, 0, 1], shape: [2, 3]),
            .int64("count", [64], shape: [1]),
        ], metadata: ["model": "SmolLM2 \"135M\""], to: path)
        XCTAssertFalse(try FileManager.default.contentsOfDirectory(atPath: dir.path).contains { $0.contains(".tmp-") })
        let script = """
        import sys, numpy as np
        from safetensors.numpy import load_file
        from safetensors import safe_open
        t = load_file(sys.argv[1])
        s = t["score"]; m = t["mask_sigma6"]
        assert s.dtype == np.float64 and s.shape == (2, 3), (s.dtype, s.shape)
        assert m.dtype == np.uint8 and m.tolist() == [[0, 1, 0], [0, 0, 1]]
        assert t["count"].tolist() == [64]
        print(repr(s.ravel().tolist()))
        print(safe_open(sys.argv[1], "np").metadata()["model"])
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, path]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, text)
        let lines = text.split(separator: "\n")
        // repr of Python floats round-trips: the values are bit-identical.
        let back = lines[0].dropFirst().dropLast().split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces))! }
        XCTAssertEqual(back.map(\.bitPattern), scores.map(\.bitPattern))
        XCTAssertEqual(String(lines[1]), "SmolLM2 \"135M\"")
    }

    func testRefusesInconsistentTensors() {
        XCTAssertThrowsError(try SafetensorsWriter.encode([.float64("a", [1, 2], shape: [3])]))
        XCTAssertThrowsError(try SafetensorsWriter.encode([.uint8("a", [1], shape: [1]), .uint8("a", [1], shape: [1])]))
    }
}
