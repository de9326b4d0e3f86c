// Templates, verbalizers, JSONL/CSV reading and every bad-input error, on small files made here.
import Coordinator
import Foundation
import XCTest

final class DatasetTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnl-ds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func file(_ name: String, _ text: String) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try text.write(toFile: p, atomically: true, encoding: .utf8)
        return p
    }

    func testGSM8KFinalAndFullAnswers() throws {
        let p = try file("g.jsonl", #####"{"question": "2+2?", "answer": "Add them.\n2+2=4\n#### 4"}"##### + "\n\n" + #####"{"question": "1+1?", "answer": "#### 2"}"##### + "\n")
        let final = try DatasetLoader.texts(DatasetSpec(path: p, prompt: "Q: {question}\nA:", answer: " {answer_final}"))
        XCTAssertEqual(final, [SampleText(line: 1, prompt: "Q: 2+2?\nA:", answer: " 4"), SampleText(line: 3, prompt: "Q: 1+1?\nA:", answer: " 2")])
        let full = try DatasetLoader.texts(DatasetSpec(path: p, prompt: "{question}", answer: " {answer}", limit: 1))
        XCTAssertEqual(full.map(\.answer), [" Add them.\n2+2=4\n#### 4"])
    }

    func testCSVWithVerbalizerQuotesAndNewlines() throws {
        let p = try file("i.csv", "text,label\n\"Great, \"\"really\"\"\nfilm\",1\nBad film,0\n")
        let spec = DatasetSpec(path: p, prompt: "Review: {text}\nSentiment:", answer: " {label}", verbalizer: ["label": ["0": "negative", "1": "positive"]])
        let t = try DatasetLoader.texts(spec)
        XCTAssertEqual(t, [SampleText(line: 2, prompt: "Review: Great, \"really\"\nfilm\nSentiment:", answer: " positive"),
                           SampleText(line: 4, prompt: "Review: Bad film\nSentiment:", answer: " negative")])
    }

    func testBadInputsNameTheFileLineAndField() throws {
        let bad = try file("b.jsonl", "{\"question\": \"ok\", \"answer\": \"#### 1\"}\n{not json\n")
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: bad, prompt: "{question}", answer: "{answer_final}"))) {
            XCTAssertEqual($0 as? DataFileError, .malformedLine(path: bad, line: 2, detail: "invalid JSON"))
            XCTAssertTrue($0.localizedDescription.contains("\(bad):2"))
        }
        let ok = try file("o.jsonl", "{\"question\": \"ok\", \"answer\": \"1\"}\n")
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: ok, prompt: "{passage}", answer: "{answer}"))) {
            XCTAssertEqual($0 as? DatasetError, .missingField(path: ok, line: 1, field: "passage"))
        }
        // answer_final needs a "####".
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: ok, prompt: "{question}", answer: "{answer_final}"))) {
            XCTAssertEqual($0 as? DatasetError, .missingField(path: ok, line: 1, field: "answer_final"))
        }
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: ok, prompt: "{question", answer: "{answer}"))) {
            guard case .badTemplate(key: "dataset.prompt", _, _)? = $0 as? DatasetError else { return XCTFail("\($0)") }
        }
        let labels = try file("l.csv", "text,label\nx,2\n")
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: labels, prompt: "{text}", answer: "{label}", verbalizer: ["label": ["0": "no", "1": "yes"]]))) {
            XCTAssertEqual($0 as? DatasetError, .unmappedLabel(path: labels, line: 2, field: "label", value: "2", known: ["0", "1"]))
        }
        let ragged = try file("r.csv", "a,b\n1\n")
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: ragged, prompt: "{a}", answer: "{b}"))) {
            guard case .malformedLine(path: ragged, line: 2, _)? = $0 as? DataFileError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: dir.appendingPathComponent("none.jsonl").path, prompt: "{a}", answer: "{b}")))
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: try file("x.txt", "hi"), prompt: "{a}", answer: "{b}"))) {
            guard case .unknownFormat? = $0 as? DatasetError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try DatasetLoader.texts(DatasetSpec(path: try file("e.jsonl", "\n"), prompt: "{a}", answer: "{b}"))) {
            guard case .empty? = $0 as? DatasetError else { return XCTFail("\($0)") }
        }
    }
}
