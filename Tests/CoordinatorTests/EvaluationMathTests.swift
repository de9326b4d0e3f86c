// Grading, statistics and random baselines of the evaluation against independent numbers.
import Coordinator
import Foundation
import XCTest

final class EvaluationMathTests: XCTestCase {
    func testFirstNumberFollowsTheSpecPattern() {
        let cases: [(String, String?)] = [
            (" 18", "18"), ("The answer is 1,234.5 dollars", "1234.5"), ("-3 degrees", "-3"), ("x-3", "-3"),
            ("costs $5.", "5"), ("3.14.15", "3.14"), ("no digits here", nil), ("", nil), ("- 4", "4"), ("1,000,000", "1000000"),
            ("12 apples and 3 pears", "12"), (".5", "5"),
        ]
        for (text, want) in cases { XCTAssertEqual(AnswerNumber.first(in: text), want, text) }
    }

    func testCorrectnessComparesNumbersAsNumbers() {
        XCTAssertTrue(AnswerNumber.isCorrect(completion: " 18 dollars", gold: " 18"))
        XCTAssertTrue(AnswerNumber.isCorrect(completion: "18.0", gold: " 18"))
        XCTAssertTrue(AnswerNumber.isCorrect(completion: "1,800", gold: "1800"))
        XCTAssertFalse(AnswerNumber.isCorrect(completion: "The total is", gold: " 18"))
        XCTAssertFalse(AnswerNumber.isCorrect(completion: "-18", gold: "18"))
        XCTAssertTrue(AnswerNumber.isCorrect(completion: " 15 balls", gold: " 15 balls"))
        // A gold answer without a number: strings, whitespace and a final period trimmed.
        XCTAssertTrue(AnswerNumber.isCorrect(completion: " yes.", gold: " yes"))
        XCTAssertFalse(AnswerNumber.isCorrect(completion: " no", gold: " yes"))
    }

    /// Wilson 95 % intervals: 0/10 → 0–0.2775 and 5/10 → 0.2366–0.7634 as tabulated by Newcombe
    /// (1998, Table I); 10/10 and 81/200 from the closed form evaluated separately in Python.
    func testWilsonIntervalMatchesHandComputedValues() {
        for (k, n, lo, hi) in [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (81, 200, 0.3394, 0.4742)] {
            let (p, l, h) = EvaluationStatistics.wilson(correct: k, of: n)
            XCTAssertEqual(p, Double(k) / Double(n), accuracy: 1e-15)
            XCTAssertEqual(l, lo, accuracy: 1e-4, "\(k)/\(n)")
            XCTAssertEqual(h, hi, accuracy: 1e-4, "\(k)/\(n)")
        }
        let s = EvaluationStatistics(correct: [true, false, true, true], logLikelihoods: [-1, -2, -3, -6])
        XCTAssertEqual(s.accuracy, 0.75)
        XCTAssertEqual(s.logLikelihood, -3)
        // Sample sd of (-1, -2, -3, -6) is √(14/3); SE = sd/2.
        XCTAssertEqual(s.logLikelihoodSE, (14.0 / 3).squareRoot() / 2, accuracy: 1e-12)
    }

    func testUniformDrawIsDistinctInRangeAndSeeded() {
        let a = RandomNeurons.uniform(count: 500, of: 46_080, seed: 3)
        XCTAssertEqual(a.count, 500)
        XCTAssertEqual(Set(a).count, 500)
        XCTAssertTrue(a.allSatisfy { $0 >= 0 && $0 < 46_080 })
        XCTAssertEqual(a, a.sorted())
        XCTAssertEqual(a, RandomNeurons.uniform(count: 500, of: 46_080, seed: 3))
        XCTAssertNotEqual(a, RandomNeurons.uniform(count: 500, of: 46_080, seed: 4))
        XCTAssertEqual(RandomNeurons.uniform(count: 10, of: 10, seed: 9), Array(0..<10))
        // Roughly uniform: each tenth of the range gets 50 ± 25 of 500.
        var bins = [Int](repeating: 0, count: 10)
        for n in a { bins[n * 10 / 46_080] += 1 }
        XCTAssertTrue(bins.allSatisfy { $0 > 25 && $0 < 75 }, "\(bins)")
    }

    func testLayerMatchedDrawKeepsTheLayerProfile() {
        let located = [3, 7, 1536 + 2, 5 * 1536 + 100, 5 * 1536 + 101, 5 * 1536 + 1535, 29 * 1536]
        let draw = RandomNeurons.layerMatched(like: located, layers: 30, ffnWidth: 1536, seed: 1)
        func profile(_ v: [Int]) -> [Int] { var p = [Int](repeating: 0, count: 30); for n in v { p[n / 1536] += 1 }; return p }
        XCTAssertEqual(profile(draw), profile(located))
        XCTAssertEqual(Set(draw).count, located.count)
        XCTAssertNotEqual(draw, located)
    }
}
