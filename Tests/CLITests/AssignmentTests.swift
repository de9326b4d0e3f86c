// Dynamic assignment (ranks ask the root for their next sample): the bytes of one process for
// any rank count, and the combination with pipeline stages refused.
import Foundation
import XCTest

final class AssignmentTests: XCTestCase {
    /// The tiny config under mpirun -np 1, 2, 3 with --assignment dynamic: scores.safetensors is
    /// byte-identical to the one-process (static) run, every sample is attributed exactly once,
    /// and the report says which rank took how many.
    func testDynamicAssignmentGivesTheBytesOfOneProcess() throws {
        let reference = try ResumeTests.reference.get()
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for np in [1, 2, 3] {
            let out = dir.appendingPathComponent("np\(np)")
            let r = try CLI.mpirun(np, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--assignment", "dynamic"])
            XCTAssertEqual(r.status, 0, "np \(np): \(r.stderr)")
            guard r.status == 0 else { continue }
            XCTAssertTrue(r.stderr.contains("dynamic assignment"), r.stderr)
            XCTAssertTrue(try Data(contentsOf: out.appendingPathComponent("scores.safetensors")) == reference,
                          "np \(np) dynamic: scores.safetensors differs from the one-process run")
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("report.json"))) as! [String: Any]
            XCTAssertEqual((report["config"] as? [String: Any])?["assignment"] as? String, "dynamic")
            let perRank = (report["timings"] as! [String: Any])["per_rank"] as! [[String: Any]]
            XCTAssertEqual(perRank.count, np)
            XCTAssertEqual(perRank.map { $0["samples"] as! Int }.reduce(0, +), 8, "np \(np): every sample exactly once")
            print("np \(np) dynamic: samples per rank \(perRank.map { $0["samples"] as! Int }), bytes equal to one process")
        }
    }

    /// Pipeline stages need every stage of a group to see the same samples in the same order:
    /// with dynamic assignment that is refused on every rank, one line naming both settings.
    func testDynamicAssignmentWithStagesIsRefused() throws {
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run")
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--assignment", "dynamic", "--stages", "2"],
                               timeout: 120)
        assertOneLineFailure(r, contains: ["'assignment'", "stages is 2", "assignment static"], outputDir: nil)
        let bad = try CLI.run(["locate", "--config", "configs/tiny.yaml", "--output", out.path, "--assignment", "greedy"], timeout: 60)
        assertOneLineFailure(bad, contains: ["--assignment must be static or dynamic, got 'greedy'"], outputDir: nil)
    }
}
