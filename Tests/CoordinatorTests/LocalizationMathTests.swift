// Eq. 8 masks, Eq. 9 metrics, the seeded a/b split and the Appendix E grid, on hand-computed cases.
import Coordinator
import XCTest

final class LocalizationMathTests: XCTestCase {
    // Scores 0×9 and 10: mean 1, population variance (9·1 + 81)/10 = 9, std 3.
    let scores: [Double] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]

    func testMaskWithStandardDeviation() {
        let m2 = NeuronMask(scores: scores, layers: 2, ffnWidth: 5, sigma: 2)
        XCTAssertEqual(m2.mean, 1, accuracy: 1e-15)
        XCTAssertEqual(m2.spread, 3, accuracy: 1e-15)
        XCTAssertEqual(m2.located, [9])                 // |10 − 1| = 9 > 6
        XCTAssertEqual(m2.neurons.map { [$0.layer, $0.index] }, [[1, 4]])
        XCTAssertEqual(m2.fraction, 0.1, accuracy: 1e-15)
        // σ = 3: 9 > 9 is false; the mask is empty (strict inequality, as Eq. 8).
        XCTAssertEqual(NeuronMask(scores: scores, layers: 2, ffnWidth: 5, sigma: 3).located, [])
    }

    func testMaskWithLiteralVariance() {
        // σ·var = 0.5·9 = 4.5: only the 10 is further than that from the mean; σ = 0.1 → 0.9:
        // every score (distance 1 or 9) is flagged, as SPEC warns for the literal Eq. 8.
        XCTAssertEqual(NeuronMask(scores: scores, layers: 2, ffnWidth: 5, sigma: 0.5, spread: .variance).located, [9])
        XCTAssertEqual(NeuronMask(scores: scores, layers: 2, ffnWidth: 5, sigma: 0.1, spread: .variance).count, 10)
    }

    func testOverlapAndIoU() {
        func mask(_ hot: [Int]) -> NeuronMask {
            var s = [Double](repeating: 0, count: 100)
            for i in hot { s[i] = 100 }
            return NeuronMask(scores: s, layers: 10, ffnWidth: 10, sigma: 1)
        }
        let a = mask([1, 2, 3]), b = mask([2, 3, 4, 5])
        XCTAssertEqual(a.located, [1, 2, 3])
        let m = OverlapMetrics(a, b)
        XCTAssertEqual(m.intersection, 2)
        XCTAssertEqual(m.union, 5)
        XCTAssertEqual(m.overlap!, (2.0 / 3 + 2.0 / 4) / 2, accuracy: 1e-15)
        XCTAssertEqual(m.iou!, 0.4, accuracy: 1e-15)
        // An empty mask: overlap and IoU are undefined, reported as such, never a 0/0.
        let empty = NeuronMask(scores: [Double](repeating: 1, count: 100), layers: 10, ffnWidth: 10, sigma: 6)
        XCTAssertEqual(empty.count, 0)
        let e = OverlapMetrics(a, empty)
        XCTAssertNil(e.overlap)
        XCTAssertNil(e.iou)
        XCTAssertNil(OverlapMetrics(empty, empty).iou)
        XCTAssertEqual(OverlapMetrics.describe(nil), "undefined (empty mask)")
    }

    func testSplitMix64KnownVector() {
        // The reference splitmix64.c with state 0 starts 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4.
        var g = SplitMix64(seed: 0)
        XCTAssertEqual(g.next(), 0xE220_A839_7B1D_CDAF)
        XCTAssertEqual(g.next(), 0x6E78_9E6A_A1B9_65F4)
    }

    func testSplitIsASeededPermutationIntoHalves() {
        let s = ABSplit(count: 11, seed: 42)
        XCTAssertEqual(s.permutation.sorted(), Array(0..<11))
        XCTAssertEqual(s.a.count, 6)
        XCTAssertEqual(s.b.count, 5)
        XCTAssertEqual(ABSplit(count: 11, seed: 42), s)                 // same seed, same split
        XCTAssertNotEqual(ABSplit(count: 11, seed: 43).permutation, s.permutation)
        let place = s.placement()
        for (r, i) in s.a.enumerated() { XCTAssertEqual(place[i].half, .a); XCTAssertEqual(place[i].rank, r) }
        for (r, i) in s.b.enumerated() { XCTAssertEqual(place[i].half, .b); XCTAssertEqual(place[i].rank, r) }
        XCTAssertEqual(ABSplit(count: 1, seed: 1).permutation, [0])
        XCTAssertEqual(ABSplit(count: 0, seed: 1).permutation, [])
    }

    func testConvergenceGrid() {
        XCTAssertEqual(ConvergenceGrid.doubling(halfSize: 250), [25, 50, 100, 200, 250])
        XCTAssertEqual(ConvergenceGrid.doubling(halfSize: 32), [25, 32])
        XCTAssertEqual(ConvergenceGrid.doubling(halfSize: 20), [20])
        XCTAssertEqual(ConvergenceGrid.doubling(halfSize: 0), [])
    }
}
