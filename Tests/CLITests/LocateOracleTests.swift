// `cnl locate` on 4 GSM8K samples against the float64 PyTorch Eq. 7 (HF modules, hooks, autograd), averaged.
import Coordinator
import Foundation
import XCTest

final class LocateOracleTests: XCTestCase {
    /// The default config over the oracle's 4 GSM8K lines (scripts/oracle/fixtures_locate.py
    /// writes them beside its reference), run under `mpirun -np 2`: Score must equal the mean of
    /// the oracle's per-sample scores to relative L2 ≤ 2e-4, with the same σ = 6 mask.
    func testScoresEqualTheMeanOfFloat64PyTorchScores() throws {
        let reference = try SafetensorsFile(path: try CLI.asset("oracle/locate/reference.safetensors"))
        let data = try CLI.asset("oracle/locate/data.jsonl")
        let expected = try reference.readDoubles("Score")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("run").path
        let r = try CLI.mpirun(2, ["locate", "--config", "configs/gsm8k-final.yaml", "--data", data, "--grid", "1,2", "--sigma", "6", "--output", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.status == 0 else { return }
        let got = try SafetensorsFile(path: out + "/scores.safetensors").readDoubles("Score")
        XCTAssertEqual(got.count, expected.count)
        var num = 0.0, den = 0.0, worst = 0.0
        for (g, e) in zip(got, expected) {
            num += (g - e) * (g - e)
            den += e * e
            worst = max(worst, abs(g - e))
        }
        let relL2 = (num / den).squareRoot()
        let maxScore = expected.map(abs).max()!
        print(String(format: "locate vs float64 PyTorch mean of 4 samples: relative L2 %.2e, max|Δ|/max|score| %.2e", relL2, worst / maxScore))
        XCTAssertLessThanOrEqual(relL2, 2e-4)
        let ours = NeuronMask(scores: got, layers: 30, ffnWidth: 1536, sigma: 6)
        let theirs = NeuronMask(scores: expected, layers: 30, ffnWidth: 1536, sigma: 6)
        print("σ = 6 mask: cnl \(ours.count) neurons, PyTorch \(theirs.count), identical: \(ours.located == theirs.located)")
        XCTAssertEqual(ours.located, theirs.located)
        // The samples are the oracle's: same token counts.
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report.json"))) as! [String: Any]
        let counts = report["data"] as! [String: Any]
        let lengths = try reference.readIntegers("prompt_lengths")
        XCTAssertEqual((counts["prompt_tokens"] as! [String: Any])["max"] as? Int, lengths.max())
        XCTAssertEqual((counts["prompt_tokens"] as! [String: Any])["min"] as? Int, lengths.min())
    }
}
