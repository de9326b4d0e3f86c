// Pipeline stages: which contiguous layers (and ends) of a model one stage holds, and how they are balanced.
import Foundation

/// Stage `index` of `count`: what a rank asks the loaders for.
public struct StageRequest: Sendable, Equatable, Codable {
    public var index: Int
    public var count: Int
    public var balance: StageBalance
    public init(index: Int, count: Int, balance: StageBalance = .work) { self.index = index; self.count = count; self.balance = balance }
}

/// What the stages' layer ranges even out (StagePartition); the scores do not depend on it.
public enum StageBalance: String, Sendable, Equatable, Codable, CaseIterable {
    /// The work of Eq. 7's rows (the default): the fastest pipeline, but the first stage holds
    /// more layers than the others (about L/√2 of them with 2 stages), because few rows cross
    /// the bottom layers.
    case work
    /// The weights each stage holds: the least memory per rank (about 1/P of the model), for a
    /// model that does not fit otherwise; the top stages then do more of the work.
    case weights
}

/// The part of a model one rank holds: a contiguous layer range, plus the embeddings on the
/// first stage and the final norm and LM head on the last. A tied embedding is held wherever
/// it is needed (first stage: to embed; last stage: as the LM head), and nowhere else.
public struct ModelSlice: Sendable, Equatable, Codable {
    public var layers: Range<Int>
    public var totalLayers: Int
    /// 0-based stage and stage count (0 of 1: the whole model).
    public var stage: Int
    public var stages: Int

    public init(layers: Range<Int>, totalLayers: Int, stage: Int, stages: Int) {
        self.layers = layers; self.totalLayers = totalLayers; self.stage = stage; self.stages = stages
    }

    public static func full(layers: Int) -> ModelSlice { ModelSlice(layers: 0..<layers, totalLayers: layers, stage: 0, stages: 1) }

    public var isFull: Bool { layers == 0..<totalLayers }
    public var holdsEmbedding: Bool { layers.lowerBound == 0 }
    public var holdsHead: Bool { layers.upperBound == totalLayers }

    /// Which part of the model a tensor serves; each architecture names its own tensors.
    public enum Part: Sendable, Equatable {
        /// The token embedding (also the LM head when tied).
        case tokenEmbedding
        /// Learned position embeddings (GPT-2): the first stage only.
        case positionEmbedding
        case layer(Int)
        /// The final norm and the LM head.
        case head
    }

    public func holds(_ part: Part, tiedEmbeddings: Bool) -> Bool {
        switch part {
        case .tokenEmbedding: return holdsEmbedding || (tiedEmbeddings && holdsHead)
        case .positionEmbedding: return holdsEmbedding
        case let .layer(l): return layers.contains(l)
        case .head: return holdsHead
        }
    }

    /// The slice of stage `request` for a model of these dimensions, balanced by `StagePartition`.
    /// Refuses a stage count the model cannot be split into (one line, naming what to change).
    public static func make(_ request: StageRequest?, dimensions d: ModelDimensions, path: String,
                            rowCost: StagePartition.RowCost) throws -> ModelSlice {
        guard let request, request.count > 1 else { return .full(layers: d.layers) }
        let ranges = try StagePartition.balanced(layers: d.layers, stages: request.count, rowCost: rowCost, balance: request.balance, path: path)
        guard ranges.indices.contains(request.index) else {
            throw StageError.badStage(index: request.index, stages: request.count)
        }
        return ModelSlice(layers: ranges[request.index], totalLayers: d.layers, stage: request.index, stages: request.count)
    }
}

/// Bad stage requests, caught before any work starts.
public enum StageError: Error, LocalizedError, Equatable {
    case tooManyStages(path: String, stages: Int, layers: Int)
    case badStage(index: Int, stages: Int)
    case notDividing(stages: Int, ranks: Int)

    public var errorDescription: String? {
        switch self {
        case let .tooManyStages(path, stages, layers):
            return layers == 1
                ? "\(path): --stages \(stages) needs a model of at least 2 layers, and this one has 1; run it without --stages"
                : "\(path): --stages \(stages) is more than the model's \(layers) layers; use at most --stages \(layers)"
        case let .badStage(index, stages):
            return "internal: stage \(index) asked of \(stages) stages"
        case let .notDividing(stages, ranks):
            return "--stages \(stages) does not divide the \(ranks) rank\(ranks == 1 ? "" : "s"); run a multiple of \(stages) ranks, or a stage count that divides \(ranks)"
        }
    }
}

/// How a model's layers are cut into stages.
///
/// The balancing rule (Eq. 7's rows, not parameters): per sample every layer l receives the
/// same number r of entering rows (its points of every answer token; layer 0 also carries the
/// clean rows, which pass every layer). A row entering at l runs l's FFN tail and then every
/// whole block above it, forward and backward, and then the head. So layer k carries about
/// (k + 1)·r block passes (the rows that entered at or below it), and the last stage also
/// carries the L·r head passes. A stage's cost is Σ_{k in its range} (k + 1)·block, plus
/// L·head on the last; the clean pass (each position through each layer once) is small
/// beside it and left out. The ranges minimize the largest stage cost (exact, by dynamic
/// programming; ties go to the split with the earlier boundaries), so the top layers, which
/// do the most work per parameter, get shorter stages.
public enum StagePartition {
    /// FLOPs of one row through one whole block and through the head (final norm + LM head).
    public struct RowCost: Sendable, Equatable {
        public var block: Double
        public var head: Double
        public init(block: Double, head: Double) { self.block = block; self.head = head }

        /// From the shapes: q/k/v/o projections, the FFN (`ffnMatrices` = 2, or 3 when gated),
        /// and the LM head.
        public init(dimensions d: ModelDimensions, queryWidth: Int, kvWidth: Int, ffnMatrices: Int) {
            let attention: Int = d.width * (queryWidth + 2 * kvWidth) + queryWidth * d.width
            let ffn: Int = ffnMatrices * d.ffnWidth * d.width
            block = 2 * Double(attention + ffn)
            head = 2 * Double(d.vocabulary * d.width)
        }
    }

    /// Cost of each layer under the rule above (the head added to the last layer). With
    /// `.weights`: the parameters a layer brings (FLOPs per row are 2 per parameter, so the
    /// same units): its block, plus the embedding on the first layer and the head on the last.
    public static func layerCosts(layers: Int, rowCost: RowCost, balance: StageBalance = .work) -> [Double] {
        switch balance {
        case .work:
            return (0..<layers).map { k in Double(k + 1) * rowCost.block + (k == layers - 1 ? Double(layers) * rowCost.head : 0) }
        case .weights:
            return (0..<layers).map { k in rowCost.block + (k == 0 ? rowCost.head : 0) + (k == layers - 1 ? rowCost.head : 0) }
        }
    }

    /// `stages` contiguous, non-empty ranges covering 0..<layers that minimize the largest cost.
    public static func balanced(layers: Int, stages: Int, rowCost: RowCost, balance: StageBalance = .work,
                                path: String = "model") throws -> [Range<Int>] {
        guard layers > 1, stages <= layers else { throw StageError.tooManyStages(path: path, stages: stages, layers: layers) }
        guard stages > 1 else { return [0..<layers] }
        let cost = layerCosts(layers: layers, rowCost: rowCost, balance: balance)
        var prefix = [0.0]
        for c in cost { prefix.append(prefix.last! + c) }
        // best[s][i]: the least largest cost of layers 0..<i in s stages; cut[s][i]: where the last starts.
        let inf = Double.infinity
        var best = [[Double]](repeating: [Double](repeating: inf, count: layers + 1), count: stages + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: layers + 1), count: stages + 1)
        best[0][0] = 0
        for s in 1...stages {
            for i in s...layers {
                for j in (s - 1)..<i where best[s - 1][j] < inf {
                    let v = max(best[s - 1][j], prefix[i] - prefix[j])
                    if v < best[s][i] { best[s][i] = v; cut[s][i] = j }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var end = layers
        for s in stride(from: stages, through: 1, by: -1) {
            let start = cut[s][end]
            ranges.append(start..<end)
            end = start
        }
        return ranges.reversed()
    }
}
