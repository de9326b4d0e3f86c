// Order-independent sums of Double vectors: the same bits for any rank count and sample order.
import Foundation

/// Sums of many Double vectors that come out bit-for-bit the same whatever the order of the
/// additions (ranks, assignment of samples, MPI's reduction tree): floating-point addition is
/// not associative, integer addition is. Each value is rounded once to fixed point with 2⁻⁸⁰
/// resolution (≈ 8e-25, far below any score's float32 noise) and split into three signed
/// 40-bit limbs held in Int64, so up to 2²³ additions cannot overflow a limb and MPI_SUM on
/// Int64 reduces them exactly. `values()` carries the limbs and converts back to Double.
public struct ExactAccumulator: Sendable, Equatable {
    /// Fraction bits of the fixed-point value.
    public static let fractionBits = 80
    static let limbBits = 40
    static let limbMask: Int64 = (1 << 40) - 1
    /// |x| must stay below 2^46 (the 128-bit fixed point's range, with margin).
    public static let magnitudeLimit = 70_368_744_177_664.0   // 2^46

    public let count: Int
    /// [3, count]: limb k of element i at k·count + i (low, middle, high).
    public private(set) var limbs: [Int64]
    /// Vectors added (the n of a mean).
    public private(set) var additions: Int64 = 0

    public init(count: Int) {
        self.count = count
        limbs = [Int64](repeating: 0, count: 3 * count)
    }

    public enum Failure: Error, LocalizedError, Equatable {
        case notFinite(index: Int, value: Double)
        case tooLarge(index: Int, value: Double)
        case sizeMismatch(expected: Int, got: Int)
        public var errorDescription: String? {
            switch self {
            case let .notFinite(i, v): return "score \(i) is \(v); a sample's attribution produced a non-finite value"
            case let .tooLarge(i, v): return "score \(i) = \(v) exceeds the accumulator's range (2^46)"
            case let .sizeMismatch(e, g): return "a score vector has \(g) values, expected \(e)"
            }
        }
    }

    /// Adds one vector (a sample's score) exactly.
    public mutating func add(_ v: [Double]) throws {
        guard v.count == count else { throw Failure.sizeMismatch(expected: count, got: v.count) }
        // Validate everything first: a bad value must not leave the sums half-updated.
        for (i, x) in v.enumerated() {
            guard x.isFinite else { throw Failure.notFinite(index: i, value: x) }
            guard abs(x) < Self.magnitudeLimit else { throw Failure.tooLarge(index: i, value: x) }
        }
        for (i, x) in v.enumerated() {
            let f = Self.fixedPoint(x)
            limbs[i] &+= Int64(truncatingIfNeeded: f & Int128(Self.limbMask))
            limbs[count + i] &+= Int64(truncatingIfNeeded: (f >> 40) & Int128(Self.limbMask))
            limbs[2 * count + i] &+= Int64(truncatingIfNeeded: f >> 80)
        }
        additions += 1
    }

    /// Adds another accumulator (what an MPI_SUM of the limbs does, element-wise).
    public mutating func merge(_ other: ExactAccumulator) {
        precondition(other.count == count, "internal: accumulators of different sizes")
        for i in limbs.indices { limbs[i] &+= other.limbs[i] }
        additions += other.additions
    }

    /// Rebuilds an accumulator from reduced limbs (after MPI).
    public init(count: Int, limbs: [Int64], additions: Int64) {
        precondition(limbs.count == 3 * count)
        self.count = count
        self.limbs = limbs
        self.additions = additions
    }

    /// The exact sums, each rounded once to Double.
    public func values() -> [Double] {
        (0..<count).map { i in
            let total = Int128(limbs[i]) + (Int128(limbs[count + i]) << 40) + (Int128(limbs[2 * count + i]) << 80)
            return Self.toDouble(total)
        }
    }

    /// The exact means (sum / additions), each rounded once.
    public func means() -> [Double] {
        guard additions > 0 else { return [Double](repeating: 0, count: count) }
        let n = Double(additions)
        return values().map { $0 / n }
    }

    // MARK: Fixed point

    /// round(x · 2^80) as Int128, exactly (x is a Double: its significand shifted).
    static func fixedPoint(_ x: Double) -> Int128 {
        if x == 0 { return 0 }
        let sign: Int128 = x < 0 ? -1 : 1
        let m = Int128(x.significandBitPattern | (x.isNormal ? (1 << 52) : 0))
        // |x| = m · 2^(e − 52), e the unbiased exponent (subnormals: e = −1022).
        let e = x.isNormal ? Int(x.exponent) : -1022
        let shift = e - 52 + fractionBits
        if shift >= 0 { return sign * (m << shift) }
        let s = -shift
        if s >= 127 { return 0 }
        // Round half to even at bit s.
        let q = m >> s, r = m - (q << s), half = Int128(1) << (s - 1)
        let rounded = (r > half || (r == half && q & 1 == 1)) ? q + 1 : q
        return sign * rounded
    }

    /// An Int128 fixed-point value as the nearest Double.
    static func toDouble(_ v: Int128) -> Double {
        if v == 0 { return 0 }
        let negative = v < 0
        let mag = UInt128(negative ? -v : v)
        let d = Double(mag) * 0x1p-80          // Double(UInt128) rounds once; · 2^-80 is exact
        return negative ? -d : d
    }
}
