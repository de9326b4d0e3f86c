// The a/b split of SPEC's Eq. 9 and the nested prefixes of Appendix E, from a seed only.
import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny generator whose every output is defined by
/// the seed, so the split is the same on every machine, rank count and Swift version (unlike
/// the standard library's unseeded generators). A Python user reproduces it in five lines.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<n by rejection (no modulo bias).
    public mutating func below(_ n: UInt64) -> UInt64 {
        precondition(n > 0)
        let limit = UInt64.max - UInt64.max % n
        while true {
            let x = next()
            if x < limit { return x % n }
        }
    }
}

/// A seeded permutation of sample indices 0..<count; half a is its first ⌈count/2⌉ entries and
/// half b the rest, each in permutation order (Appendix E takes prefixes of these orders).
public struct ABSplit: Sendable, Equatable {
    public let seed: UInt64
    public let permutation: [Int]
    public var a: ArraySlice<Int> { permutation[0..<((permutation.count + 1) / 2)] }
    public var b: ArraySlice<Int> { permutation[((permutation.count + 1) / 2)...] }

    /// Fisher–Yates with SplitMix64(seed): position i swaps with a uniform j ≤ i, from the end.
    public init(count: Int, seed: UInt64) {
        var p = Array(0..<count)
        var rng = SplitMix64(seed: seed)
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) {
                let j = Int(rng.below(UInt64(i + 1)))
                p.swapAt(i, j)
            }
        }
        self.seed = seed
        permutation = p
    }

    /// For each sample index: which half it is in and its rank within that half's order.
    public func placement() -> [(half: Half, rank: Int)] {
        var out = [(half: Half, rank: Int)](repeating: (.a, 0), count: permutation.count)
        for (r, i) in a.enumerated() { out[i] = (.a, r) }
        for (r, i) in b.enumerated() { out[i] = (.b, r) }
        return out
    }

    public enum Half: String, Codable, Sendable { case a, b }
}

/// Appendix E's sizes n: the first n samples of a and of b (nested prefixes).
public enum ConvergenceGrid {
    /// 25, 50, 100, 200, … doubling while below the half size, then the half size itself.
    public static func doubling(halfSize: Int, start: Int = 25) -> [Int] {
        guard halfSize > 0 else { return [] }
        var grid: [Int] = []
        var n = max(1, start)
        while n < halfSize { grid.append(n); n *= 2 }
        grid.append(halfSize)
        return grid
    }
}
