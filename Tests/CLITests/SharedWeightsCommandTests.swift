// One weight copy per node: the bytes of private copies, a node's memory one model lower, a /dev/shm too small refused.
import Foundation
import XCTest

final class SharedWeightsCommandTests: XCTestCase {
    /// np 2 on one node with shared weights (the default) and with --no-shared-weights (each rank
    /// reads its own copy, the plain path): identical scores, and the node's proportional set
    /// size lower by about one model's fp32 weights (PSS splits the shared pages between the
    /// ranks that map them, so one copy, not two, is counted).
    func testSharedWeightsKeepTheBytesAndSaveOneCopy() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var bytes: [Bool: Data] = [:], nodePSS: [Bool: Int] = [:], weightBytes = 0
        for shared in [true, false] {
            let out = dir.appendingPathComponent(shared ? "shared" : "private").path
            let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out] + (shared ? [] : ["--no-shared-weights"]), timeout: 300)
            XCTAssertEqual(r.status, 0, r.stderr)
            guard r.status == 0 else { return }
            bytes[shared] = try Data(contentsOf: URL(fileURLWithPath: out + "/scores.safetensors"))
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
            let placement = report["placement"] as! [String: Any]
            let ranks = placement["ranks"] as! [[String: Any]]
            XCTAssertEqual(ranks.map { $0["shared_weights"] as! Bool }, [shared, shared])
            weightBytes = ranks[0]["weight_bytes"] as! Int
            let nodes = placement["nodes"] as! [[String: Any]]
            XCTAssertEqual(nodes.count, 1)
            nodePSS[shared] = nodes[0]["pss_bytes"] as? Int
            XCTAssertEqual(r.stdout.contains("(weights shared per node)"), shared, r.stdout)
        }
        XCTAssertTrue(bytes[true] == bytes[false], "shared weights changed scores.safetensors")
        let saved = nodePSS[false]! - nodePSS[true]!
        print("shared weights: node PSS \(nodePSS[true]! / 1_000_000) MB vs \(nodePSS[false]! / 1_000_000) MB private; one copy is \(weightBytes / 1_000_000) MB")
        XCTAssertGreaterThan(weightBytes, 500_000_000, "SmolLM2's 134.5 M parameters as fp32")
        XCTAssertGreaterThan(Double(saved), 0.8 * Double(weightBytes), "sharing must save about one copy")
        XCTAssertLessThan(Double(saved), 1.2 * Double(weightBytes))
    }

    /// A backing directory on a 64 MB tmpfs cannot hold SmolLM2's 538 MB: one error line naming
    /// the sizes and the ways out, every rank non-zero, no report. (Needs mount; root in CI.)
    func testTooSmallSharedMemoryIsRefused() throws {
        _ = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let shm = dir.appendingPathComponent("shm")
        try FileManager.default.createDirectory(at: shm, withIntermediateDirectories: true)
        let mount = try CLI.launch("/bin/mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", shm.path], environment: [:], timeout: 30)
        guard mount.status == 0 else { throw XCTSkip("cannot mount a small tmpfs here: \(mount.stderr)") }
        defer { _ = try? CLI.launch("/bin/umount", [shm.path], environment: [:], timeout: 30) }
        let out = dir.appendingPathComponent("run")
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path],
                               environment: ["OMPI_MCA_osc_sm_backing_directory": shm.path], timeout: 300)
        assertOneLineFailure(r, contains: ["shared weights need 0.54 GB", shm.path, "0.07 GB free", "--no-shared-weights"], outputDir: nil)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path + "/report.json"))
    }
}
