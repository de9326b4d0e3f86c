// Threads over row batches: the same bytes for any worker count, results in order, failures
// after the samples before them; checked against the one-thread single-sample path.
import Engine
import Foundation
import XCTest

final class RowWorkersTests: XCTestCase {
    func model() throws -> TransformerModel {
        let dir = URL(fileURLWithPath: try Fixtures.require("oracle/models/llama-f32/config.json")).deletingLastPathComponent().path
        return try ModelRegistry.load(path: dir).model
    }

    func testWorkerCountsGiveTheSameBytes() throws {
        let m = try model()
        // Three samples of different lengths; a row budget of 7 cuts each into many batches
        // that straddle layers and answer tokens.
        let samples: [(prompt: [Int], answer: [Int])] = [([5, 9, 17, 3], [40, 41]), ([1, 2], [7, 8, 9]), ([30, 31, 32, 33, 34, 35], [2])]
        let options = AttributionOptions(steps: 4, rowBudget: 7)
        let single = try samples.map { try SampleAttributor(model: m, options: options).attribute(prompt: $0.prompt, answer: $0.answer) }
        for workers in [1, 2, 3] {
            var got: [Int: SampleAttribution] = [:]
            var order: [Int] = []
            try SampleAttributor(model: m, options: options, workers: workers).attribute(samples: samples) { i, r in
                order.append(i); got[i] = r
            }
            XCTAssertEqual(order, [0, 1, 2], "results in sample order with \(workers) workers")
            for i in samples.indices {
                XCTAssertEqual(got[i]!.scores, single[i].scores, "sample \(i), \(workers) workers: bitwise the same scores")
                XCTAssertEqual(got[i]!.attributionSums, single[i].attributionSums)
                XCTAssertEqual(got[i]!.rows, single[i].rows)
            }
        }
        // A different row budget batches the rows differently: equal up to rounding only.
        let other = try SampleAttributor(model: m, options: AttributionOptions(steps: 4, rowBudget: 1000)).attribute(prompt: samples[0].prompt, answer: samples[0].answer)
        let scale = single[0].scores.map(abs).max()!
        XCTAssertLessThanOrEqual(zip(other.scores, single[0].scores).map { abs($0 - $1) }.max()!, 1e-5 * scale)
    }

    func testFailureComesAfterTheSamplesBeforeIt() throws {
        let m = try model()
        let samples: [(prompt: [Int], answer: [Int])] = [([5, 9], [4]), ([1, 2], []), ([3], [4])]
        for workers in [1, 2] {
            var delivered: [Int] = []
            XCTAssertThrowsError(try SampleAttributor(model: m, options: AttributionOptions(steps: 2), workers: workers)
                .attribute(samples: samples) { i, _ in delivered.append(i) }) { error in
                let failure = error as? SampleAttributionFailure
                XCTAssertEqual(failure?.index, 1)
                XCTAssertEqual(failure?.underlying as? AttributionError, .emptyAnswer)
            }
            XCTAssertEqual(delivered, [0], "\(workers) workers")
        }
        // An error of the consumer ends the stream at once.
        struct Stop: Error {}
        var seen = 0
        XCTAssertThrowsError(try SampleAttributor(model: m, options: AttributionOptions(steps: 2), workers: 2)
            .attribute(samples: [([5], [4]), ([6], [4]), ([7], [4])]) { _, _ in seen += 1; throw Stop() }) { XCTAssert($0 is Stop) }
        XCTAssertEqual(seen, 1)
    }
}
