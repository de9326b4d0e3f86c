// The shipped configs load and render real records; bad configs give one clear error each.
import Coordinator
import Foundation
import XCTest

final class RunConfigTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func testShippedConfigsLoadAndRenderTheirData() throws {
        let dir = root.appendingPathComponent("configs")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") }.sorted()
        XCTAssertEqual(names, ["asdiv.yaml", "boolq.yaml", "gsm8k-final.yaml", "gsm8k-full.yaml", "imdb.yaml", "tiny.yaml"])
        let cwd = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(root.path)   // configs name paths from the repository root
        defer { FileManager.default.changeCurrentDirectoryPath(cwd) }
        for name in names {
            let config = try RunConfig.load(path: dir.appendingPathComponent(name).path)
            guard FileManager.default.fileExists(atPath: config.dataset.path) else {
                return XCTFail("missing \(config.dataset.path): run scripts/fetch-assets.sh")
            }
            var spec = config.dataset
            spec.limit = 5
            let texts = try DatasetLoader.texts(spec)
            XCTAssertEqual(texts.count, 5, name)
            XCTAssertTrue(texts.allSatisfy { !$0.prompt.isEmpty && !$0.answer.trimmingCharacters(in: .whitespaces).isEmpty }, name)
            print("\(name): \(String(reflecting: texts[0].answer)) ← \(String(reflecting: String(texts[0].prompt.suffix(40))))")
        }
        let gsm = try RunConfig.load(path: dir.appendingPathComponent("gsm8k-final.yaml").path)
        XCTAssertEqual(gsm.sigmas, [3, 6, 12])
        XCTAssertEqual(gsm.attributionOptions, AttributionOptions(steps: 19, normalization: .paper, maxAnswerTokens: nil, rowBudget: 600))
        XCTAssertEqual(try RunConfig.load(path: dir.appendingPathComponent("tiny.yaml").path).sigmas, [6])
    }

    func config(_ yaml: String) throws -> RunConfig {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-cfg-\(UUID().uuidString).yaml").path
        try yaml.write(toFile: p, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: p) }
        return try RunConfig.load(path: p)
    }

    let base = """
    model: m.gguf
    dataset: {path: d.jsonl, prompt: "{question}", answer: " {answer_final}"}
    output: runs/x

    """

    func testDefaults() throws {
        let c = try config(base)
        XCTAssertEqual(c.sigmas, [6]); XCTAssertEqual(c.spread, .std); XCTAssertEqual(c.steps, 19)
        XCTAssertEqual(c.normalization, .paper); XCTAssertEqual(c.seed, 0); XCTAssertNil(c.maxAnswerTokens)
        XCTAssertEqual(c.assignment, .static)
        XCTAssertEqual(try config(base + "assignment: dynamic\n").assignment, .dynamic)
    }

    func testBadConfigs() {
        func expect(_ yaml: String, _ fragment: String, line: UInt = #line) {
            XCTAssertThrowsError(try config(yaml), line: line) { e in
                XCTAssertTrue(e.localizedDescription.contains(fragment), "\(e.localizedDescription)", line: line)
                XCTAssertFalse(e.localizedDescription.contains("\n"), "one line", line: line)
            }
        }
        expect(base + "sigma: 0\n", "σ must be a positive number")
        expect(base + "sigma: [6, -1]\n", "σ must be a positive number")
        expect(base + "sigmaa: 6\n", "unknown key 'sigmaa'")
        expect(base + "steps: 0\n", "'steps'")
        expect(base + "spread: mad\n", "config 'spread': 'mad' is not one of std, var")
        expect(base + "stage_balance: layers\n", "config 'stage_balance': 'layers' is not one of work, weights")
        expect(base + "stages: 0\n", "'stages'")
        expect(base + "assignment: greedy\n", "config 'assignment': 'greedy' is not one of static, dynamic")
        expect(base + "assignment: dynamic\nstages: 2\n", "config 'assignment': dynamic assignment does not work with pipeline stages (stages is 2)")
        expect(base + "normalization: simpson\n", "normalization")
        expect(base + "row_budget: -5\n", "row_budget")
        expect("dataset: {path: d.jsonl, prompt: \"{q}\", answer: \"{a}\"}\noutput: x\n", "'model' is missing")
        expect(base.replacingOccurrences(of: "\"{question}\"", with: "\"{question\""), "never closed")
        expect(base + "dataset2: 1\n", "unknown key 'dataset2'")
        expect("model: [unclosed\n", "not valid YAML")
    }
}
