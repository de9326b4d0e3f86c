// The random baselines of Table 3 (SPEC "Table 3: erase"): as many neurons as located, uniform or layer-matched.
import Foundation

public enum RandomBaseline: String, Codable, Sendable, CaseIterable {
    /// `count` neurons uniformly without replacement from all L·J (the paper's baseline).
    case uniform
    /// In each layer as many neurons as the located set has there, uniformly within the layer:
    /// the layer profile is held fixed, so a gap to it is not a matter of which layers.
    case layerMatched = "layer-matched"
}

public enum RandomNeurons {
    /// `count` distinct flat indices from 0..<n, ascending: the first `count` steps of a
    /// Fisher–Yates shuffle from the front driven by SplitMix64(seed) (position i swaps with a
    /// uniform j in i..<n), which a Python user reproduces with the generator of ABSplit.swift.
    public static func uniform(count: Int, of n: Int, seed: UInt64) -> [Int] {
        precondition(count >= 0 && count <= n)
        var rng = SplitMix64(seed: seed)
        var swapped: [Int: Int] = [:]         // sparse permutation: n can be 10⁶ neurons
        var out: [Int] = []
        out.reserveCapacity(count)
        for i in 0..<count {
            let j = i + Int(rng.below(UInt64(n - i)))
            let vi = swapped[i] ?? i, vj = swapped[j] ?? j
            swapped[j] = vi
            swapped[i] = vj
            out.append(vj)
        }
        return out.sorted()
    }

    /// The same number per layer as `located` (flat indices l·J + j), each layer drawn with
    /// `uniform` from one generator stream: layer l uses seed SplitMix64(seed) advanced l times.
    public static func layerMatched(like located: [Int], layers: Int, ffnWidth: Int, seed: UInt64) -> [Int] {
        var perLayer = [Int](repeating: 0, count: layers)
        for n in located { perLayer[n / ffnWidth] += 1 }
        var seeds = SplitMix64(seed: seed)
        var out: [Int] = []
        for l in 0..<layers {
            let s = seeds.next()
            out += uniform(count: perLayer[l], of: ffnWidth, seed: s).map { l * ffnWidth + $0 }
        }
        return out
    }

    public static func draw(_ baseline: RandomBaseline, like located: [Int], layers: Int, ffnWidth: Int, seed: UInt64) -> [Int] {
        switch baseline {
        case .uniform: return uniform(count: located.count, of: layers * ffnWidth, seed: seed)
        case .layerMatched: return layerMatched(like: located, layers: layers, ffnWidth: ffnWidth, seed: seed)
        }
    }
}
