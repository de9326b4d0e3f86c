// `cnl evaluate` against an evaluation written with HF transformers (scripts/oracle/fixtures_evaluate.py).
import Coordinator
import Foundation
import XCTest

final class EvaluateOracleTests: XCTestCase {
    struct Task { let name: String; let dataset: String }

    /// The oracle's four tasks with the same templates (its data.jsonl holds the records).
    static let tasks = [
        Task(name: "gsm8k", dataset: """
          prompt: "Question: {question}\\nAnswer:"
          answer: " {answer_final}"
          task: generate
          max_new_tokens: 16
        """),
        Task(name: "boolq", dataset: """
          prompt: "{passage}\\nQuestion: {question}?\\nAnswer:"
          answer: " {answer}"
          verbalizer:
            answer: {"True": "yes", "False": "no"}
          task: choice
        """),
        Task(name: "csqa", dataset: """
          prompt: "Question: {question}\\nOptions:{options}\\nAnswer:"
          answer: " {answer}"
          options: options
          task: choice
        """),
        Task(name: "imdb", dataset: """
          prompt: "Review: {text}\\nSentiment:"
          answer: " {label}"
          verbalizer:
            label: {"0": "negative", "1": "positive"}
          task: choice
        """),
    ]

    /// 50 greedy GSM8K answers and 50 choice samples (BoolQ 20, CommonsenseQA 20, IMDB 10) under
    /// mpirun -np 2: the same predictions and correctness as HF, gold log-likelihoods and option
    /// scores within 1e-4, and the same accuracy.
    func testPredictionsAndLogLikelihoodsMatchTransformers() throws {
        let model = try CLI.asset("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let dir = try CLI.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var perKind: [String: Int] = [:]
        for task in Self.tasks {
            let refPath = try CLI.asset("oracle/evaluate/\(task.name)/reference.json")
            let data = try CLI.asset("oracle/evaluate/\(task.name)/data.jsonl")
            let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: refPath))) as! [String: Any]
            let samples = ref["samples"] as! [[String: Any]]
            let config = dir.appendingPathComponent("\(task.name).yaml").path
            let out = dir.appendingPathComponent(task.name).path
            try "model: \(model)\ndataset:\n  path: \(data)\n\(task.dataset)\noutput: \(out)\n".write(toFile: config, atomically: true, encoding: .utf8)
            let r = try CLI.mpirun(2, ["evaluate", "--config", config])
            XCTAssertEqual(r.status, 0, r.stderr)
            guard r.status == 0 else { continue }
            let rows = try CSVRecords.read(path: out + "/samples.csv").map(\.fields)
            XCTAssertEqual(rows.count, samples.count, task.name)
            var worstLL = 0.0, worstScore = 0.0, samePrediction = 0
            for (row, s) in zip(rows, samples) {
                XCTAssertEqual(Int(row["line"]!), s["line"] as? Int, task.name)
                let ll = Double(row["log_likelihood"]!)!
                worstLL = max(worstLL, abs(ll - (s["gold_loglik"] as! Double)))
                XCTAssertEqual(row["correct"] == "1", s["correct"] as? Bool, "\(task.name) line \(row["line"]!)")
                if ref["kind"] as? String == "generate" {
                    let want = (s["prediction"] as? String) ?? ""
                    XCTAssertEqual(row["prediction"], want, "\(task.name) line \(row["line"]!)")
                    XCTAssertEqual(row["completion"], s["completion"] as? String, "\(task.name) line \(row["line"]!)")
                    if row["prediction"] == want && row["completion"] == s["completion"] as? String { samePrediction += 1 }
                } else {
                    let scores = row["option_scores"]!.split(separator: ";").map { Double($0)! }
                    let want = s["option_scores"] as! [Double]
                    XCTAssertEqual(scores.count, want.count)
                    for (a, b) in zip(scores, want) { worstScore = max(worstScore, abs(a - b)) }
                    let best = scores.indices.max { scores[$0] < scores[$1] || (scores[$0] == scores[$1] && $0 > $1) }!
                    XCTAssertEqual(best, s["prediction"] as? Int, "\(task.name) line \(row["line"]!)")
                    if best == s["prediction"] as? Int { samePrediction += 1 }
                }
            }
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/evaluation.json"))) as! [String: Any]
            let stats = report["statistics"] as! [String: Any]
            XCTAssertEqual(stats["accuracy"] as! Double, ref["accuracy"] as! Double, accuracy: 1e-12, task.name)
            XCTAssertEqual(stats["log_likelihood"] as! Double, ref["mean_gold_loglik"] as! Double, accuracy: 1e-4, task.name)
            XCTAssertLessThanOrEqual(worstLL, 1e-4, task.name)
            XCTAssertLessThanOrEqual(worstScore, 1e-4, task.name)
            perKind[ref["kind"] as! String, default: 0] += samples.count
            print(String(format: "evaluate vs HF %@: %d samples, same predictions %d, accuracy %.3f, max |Δ log-likelihood| %.2e, max |Δ option score| %.2e",
                         task.name, samples.count, samePrediction, stats["accuracy"] as! Double, worstLL, worstScore))
        }
        XCTAssertGreaterThanOrEqual(perKind["generate"] ?? 0, 50)
        XCTAssertGreaterThanOrEqual(perKind["choice"] ?? 0, 50)
    }
}
