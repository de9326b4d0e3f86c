// The reduction's sums are bitwise identical in any order and exact to one final rounding.
import Foundation
import Shard
import XCTest

final class ExactAccumulatorTests: XCTestCase {
    /// Deterministic pseudo-random scores of mixed magnitudes and signs.
    func vectors(_ n: Int, width: Int, seed: UInt64) -> [[Double]] {
        var s = seed
        func next() -> Double {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            let u = Double(s >> 11) / Double(1 << 53)
            let mag = pow(10, -8 + 8 * u)          // 1e-8 … 1
            return (s & 1 == 0 ? 1 : -1) * mag * (0.5 + u)
        }
        return (0..<n).map { _ in (0..<width).map { _ in next() } }
    }

    func testAnyOrderAndAnySplitGiveTheSameBits() throws {
        let vs = vectors(200, width: 64, seed: 1)
        var one = ExactAccumulator(count: 64)
        for v in vs { try one.add(v) }
        // Reverse order, and a split over 7 "ranks" merged in a scrambled order.
        var rev = ExactAccumulator(count: 64)
        for v in vs.reversed() { try rev.add(v) }
        var parts = (0..<7).map { _ in ExactAccumulator(count: 64) }
        for (i, v) in vs.enumerated() { try parts[(i * 5 + 3) % 7].add(v) }
        var merged = ExactAccumulator(count: 64)
        for k in [4, 0, 6, 2, 5, 1, 3] { merged.merge(parts[k]) }
        XCTAssertEqual(one.values().map(\.bitPattern), rev.values().map(\.bitPattern))
        XCTAssertEqual(one.values().map(\.bitPattern), merged.values().map(\.bitPattern))
        XCTAssertEqual(merged.additions, 200)
        // Plain Double sums do depend on the order (the reason for all this).
        let fwd = (0..<64).map { j in vs.reduce(0.0) { $0 + $1[j] } }
        let bwd = (0..<64).map { j in vs.reversed().reduce(0.0) { $0 + $1[j] } }
        XCTAssertNotEqual(fwd.map(\.bitPattern), bwd.map(\.bitPattern))
    }

    func testSumsAreExactToOneRounding() throws {
        // Against a sum computed exactly with Decimal-free reasoning: values that are multiples
        // of 2^-40 sum exactly in Double too when few and small.
        var acc = ExactAccumulator(count: 3)
        try acc.add([0.5, -0.25, 1e-3])
        try acc.add([0.25, -0.25, -1e-3])
        try acc.add([0x1p-40, 3, 2e-3])
        let v = acc.values()
        XCTAssertEqual(v[0], 0.75 + 0x1p-40)
        XCTAssertEqual(v[1], 2.5)
        XCTAssertEqual(v[2], 2e-3, accuracy: 1e-18)
        XCTAssertEqual(acc.means()[1], 2.5 / 3)
        // The fixed point resolves tiny scores: 1e-20 survives.
        var tiny = ExactAccumulator(count: 1)
        try tiny.add([1e-20])
        XCTAssertEqual(tiny.values()[0], 1e-20, accuracy: 1e-24)
    }

    func testRejectsNonFiniteAndOutOfRange() {
        var acc = ExactAccumulator(count: 2)
        XCTAssertThrowsError(try acc.add([.nan, 0])) { e in
            guard case .notFinite(index: 0, _)? = e as? ExactAccumulator.Failure else { return XCTFail("\(e)") }
        }
        XCTAssertThrowsError(try acc.add([2, 1e300])) { XCTAssertEqual($0 as? ExactAccumulator.Failure, .tooLarge(index: 1, value: 1e300)) }
        XCTAssertThrowsError(try acc.add([0]))
        // Nothing of a rejected vector was added (its valid first value included).
        XCTAssertEqual(acc.additions, 0)
        XCTAssertEqual(acc.values(), [0, 0])
    }
}
