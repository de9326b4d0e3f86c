// Eq. 7 on pipeline stages: one stage's share of every clean pass and row batch, on a 1F1B schedule.
import Foundation

/// How a stage reaches its neighbours and stage 0. Engine never calls MPI: Shard implements
/// this with point-to-point messages (Shard/StageLink.swift), and the tests with threads.
///
/// Sends return at once (the link copies what it sends); receives block until the data is
/// there. Messages between two stages arrive in the order they were sent.
public protocol StageLink: AnyObject {
    /// Hidden states [rows, D] of a clean pass or a row batch, to the next stage.
    func sendToNext(_ values: UnsafePointer<Float>, count: Int) throws
    func receiveFromPrevious(_ values: UnsafeMutablePointer<Float>, count: Int) throws
    /// Their gradients, back to the previous stage.
    func sendToPrevious(_ values: UnsafePointer<Float>, count: Int) throws
    func receiveFromNext(_ values: UnsafeMutablePointer<Float>, count: Int) throws
    /// A stage's part of one sample (StagePart), to stage 0 (stages ≥ 1).
    func sendPart(_ values: [Double]) throws
    /// On stage 0: the next part that `stage` sent; nil when none has arrived and !wait.
    func receivePart(from stage: Int, wait: Bool) throws -> [Double]?
    /// Waits until everything sent has been delivered (before a stage ends).
    func finishSends() throws
}

/// One stage of a pipeline that attributes a stream of samples.
///
/// The work is the whole-model computation cut at layer boundaries, nothing else: every
/// stage makes the same rows and batches (they depend only on the sample and the options);
/// batch b's rows run the stage's layers with the same products on the same rows as in the
/// whole model; the stage sums its layers' scores over batches in batch order, as the whole
/// model does; stage 0 puts the layers side by side. So the scores have the same bits as
/// without stages (tested against SampleAttributor on random llama, gpt2 and gptj).
///
/// A row (m, l, k) starts at the stage that owns l: a batch runs on the stages from the one
/// holding its lowest entry layer up to the last, and the rows arriving from below join those
/// entering here. The last stage holds the head: it turns the forward into ∂P/∂x.
///
/// Schedule (1F1B): stage s runs the forward of each unit in stream order (a sample's clean
/// pass, then its batches) and keeps `warmup = P − 1 − s + slack` batches forwarded ahead
/// of their backward; after that, each forward is followed by the oldest batch's backward.
/// The last stage therefore runs each batch's backward at once, and stage s has work while
/// the stages above it finish the batches it passed up. Sends never block, and each stage's
/// order is a linearization of the dependencies (a forward waits for the stage below, a
/// backward for the stage above, which by then has run every forward this one ran), so the
/// schedule cannot deadlock.
public final class StageAttributor {
    public let model: TransformerModel
    public let link: StageLink
    /// Batches forwarded ahead of their backward on this stage.
    public let warmup: Int
    let core: SampleAttributor
    private var spare: [RowWorkspace] = []

    /// Extra batches in flight beyond 1F1B's P − 1 − s: with batches of unequal cost a stage
    /// otherwise waits on the one above more often. Each costs one workspace.
    public static let slack = 1

    public init(model: TransformerModel, options: AttributionOptions, link: StageLink) throws {
        self.model = model
        self.link = link
        core = try SampleAttributor(stageOf: model, options: options)
        warmup = model.slice.stages - 1 - model.slice.stage + Self.slack
    }

    /// A batch whose forward has run here, waiting for its backward.
    private struct InFlight {
        typealias Work = (layout: SampleAttributor.BatchLayout, layers: Range<Int>, workspace: RowWorkspace,
                          pZero: [(Int, Double)], flops: Double)
        let sample: OpenSample
        let batch: Int
        /// nil: the batch does not reach this stage's layers (its rows all enter above).
        let work: Work?
    }

    private final class OpenSample {
        let index: Int
        let plan: SampleAttributor.SamplePlan
        var parts: [BatchResult?]
        var remaining: Int
        init(index: Int, plan: SampleAttributor.SamplePlan) {
            self.index = index; self.plan = plan
            parts = Array(repeating: nil, count: plan.batches.count)
            remaining = plan.batches.count
        }
    }

    /// Attributes `samples` (every stage of the pipeline passes the same ones). On stage 0,
    /// `onResult` receives each whole sample in order, as SampleAttributor would hand it
    /// over; on the other stages it is never called.
    public func attribute(samples: [(prompt: [Int], answer: [Int])], onResult: (Int, SampleAttribution) throws -> Void) throws {
        var pending: [InFlight] = []
        let P = model.slice.stages, L = model.dimensions.layers, J = model.dimensions.ffnWidth
        var done: [(index: Int, own: StagePart)] = []      // stage 0: finished here, waiting for the other stages
        var arrived: [Int: [Double]] = [:]                  // stage 0: the oldest waiting sample's parts, by stage
        func deliver(wait: Bool) throws {
            while let first = done.first {
                for s in 1..<P where arrived[s] == nil {
                    guard let part = try link.receivePart(from: s, wait: wait) else { return }
                    arrived[s] = part
                }
                let parts = try [first.own] + (1..<P).map { try StagePart(decoding: arrived[$0]!, ffnWidth: J, totalLayers: L) }
                done.removeFirst()
                arrived = [:]
                try onResult(first.index, StagePart.assemble(parts, layers: L, ffnWidth: J))
            }
        }
        func finishBackward(_ f: InFlight) throws {
            let sample = f.sample
            if let work = f.work {
                sample.parts[f.batch] = try backward(sample.plan, work: work)
                spare.append(work.workspace)
            }
            sample.remaining -= 1
            guard sample.remaining == 0 else { return }
            let part = StagePart(plan: sample.plan, results: sample.parts.compactMap { $0 }, slice: model.slice, ffnWidth: J)
            if model.slice.stage == 0 {
                done.append((sample.index, part))
                try deliver(wait: false)
            } else {
                try link.sendPart(part.encoded())
            }
        }
        for (i, s) in samples.enumerated() {
            let plan: SampleAttributor.SamplePlan
            do { plan = try core.prepare(prompt: s.prompt, answer: s.answer, link: link) } catch { throw SampleAttributionFailure(index: i, underlying: error) }
            let sample = OpenSample(index: i, plan: plan)
            for b in plan.batches.indices {
                pending.append(InFlight(sample: sample, batch: b, work: try forward(plan, batch: b)))
                if pending.count > warmup { try finishBackward(pending.removeFirst()) }
            }
        }
        while !pending.isEmpty { try finishBackward(pending.removeFirst()) }
        if model.slice.stage == 0 { try deliver(wait: true) }
        try link.finishSends()
    }

    /// The forward of batch `b` on this stage's layers (and the head on the last stage).
    private func forward(_ plan: SampleAttributor.SamplePlan, batch b: Int) throws -> InFlight.Work? {
        let range = plan.batches[b]
        let slice = model.slice
        let lmin = plan.rows[range.lowerBound].l
        guard lmin < slice.layers.upperBound else { return nil }
        let layout = SampleAttributor.BatchLayout(plan, rows: range, model: model, cleanPoint: core.cleanPoint)
        let layers = max(lmin, slice.layers.lowerBound)..<slice.layers.upperBound
        let ws = spare.popLast() ?? RowWorkspace(layers: model.dimensions.layers)
        let D = model.dimensions.width
        ws.x.ensure(layout.count * D)
        if layers.lowerBound > lmin {
            try link.receiveFromPrevious(ws.x.pointer, count: layout.arriving(at: layers.lowerBound) * D)
        }
        var flops = core.forwardRows(plan, layout, layers: layers, workspace: ws)
        var pZero: [(Int, Double)] = []
        if slice.holdsHead {
            let head = core.headRows(plan, layout, workspace: ws)
            pZero = head.pZero
            flops += head.flops
        } else {
            try link.sendToNext(ws.x.pointer, count: layout.active[layers.upperBound - 1] * D)
        }
        return (layout, layers, ws, pZero, flops)
    }

    /// The backward of a forwarded batch on this stage's layers: its contribution here.
    private func backward(_ plan: SampleAttributor.SamplePlan, work: InFlight.Work) throws -> BatchResult {
        let (layout, layers, ws) = (work.layout, work.layers, work.workspace)
        let D = model.dimensions.width
        if !model.slice.holdsHead {
            ws.dx.ensure(layout.count * D)
            try link.receiveFromNext(ws.dx.pointer, count: layout.active[layers.upperBound - 1] * D)
        }
        let (scores, sums) = core.backwardRows(plan, layout, layers: layers, workspace: ws)
        if layers.lowerBound > layout.lmin {
            try link.sendToPrevious(ws.dx.pointer, count: layout.arriving(at: layers.lowerBound) * D)
        }
        return BatchResult(firstLayer: layers.lowerBound, scores: scores, sums: sums, pZero: work.pZero, flops: work.flops, bytes: ws.bytes)
    }
}

/// What one stage contributes to a sample: its layers' scores and per-(m, l) sums (summed over
/// batches in batch order, as SampleAttributor.merge does), and on the last stage the P(0)s
/// and clean P(1)s. Sent to stage 0 as Doubles: [first layer, end layer, Y, flops, bytes,
/// scores…, sums…, (last stage:) P(0)s…, P(1)s…].
struct StagePart {
    let layers: Range<Int>
    let answerTokens: Int
    let scores: [Double]        // [layers, J]
    let sums: [Double]          // [Y, layers]
    let pZero: [Double]         // [Y, L] (last stage), else empty
    let pClean: [Double]        // [Y] (last stage), else empty
    let rows: Int
    let flops: Double
    let bytes: Int

    init(plan: SampleAttributor.SamplePlan, results: [BatchResult], slice: ModelSlice, ffnWidth J: Int) {
        let (L, Y, n) = (slice.totalLayers, plan.Y, slice.layers.count)
        let first = slice.layers.lowerBound
        var scores = [Double](repeating: 0, count: n * J), sums = [Double](repeating: 0, count: Y * n)
        var pZero = slice.holdsHead ? [Double](repeating: .nan, count: Y * L) : []
        var flops = 0.0, bytes = 0
        for part in results {
            for (i, v) in part.scores.enumerated() { scores[(part.firstLayer - first) * J + i] += v }
            for (i, v) in part.sums { sums[(i / L) * n + (i % L - first)] += v }
            for (i, v) in part.pZero { pZero[i] = v }
            flops += part.flops
            bytes = max(bytes, part.bytes)
        }
        layers = slice.layers; answerTokens = Y; self.scores = scores; self.sums = sums; self.pZero = pZero
        pClean = plan.pClean; rows = plan.rows.count; self.flops = flops; self.bytes = bytes
    }

    init(decoding v: [Double], ffnWidth J: Int, totalLayers L: Int) throws {
        guard v.count >= 6 else { throw StageMessageError.malformed(count: v.count) }
        let (lower, upper, Y) = (Int(v[0]), Int(v[1]), Int(v[2]))
        let n = upper - lower
        let head = upper == L
        let expected = 6 + n * J + Y * n + (head ? Y * L + Y : 0)
        guard n > 0, Y > 0, v.count == expected else { throw StageMessageError.malformed(count: v.count) }
        layers = lower..<upper; answerTokens = Y; rows = Int(v[3]); flops = v[4]; bytes = Int(v[5])
        var o = 6
        scores = Array(v[o..<(o + n * J)]); o += n * J
        sums = Array(v[o..<(o + Y * n)]); o += Y * n
        pZero = head ? Array(v[o..<(o + Y * L)]) : []; o += head ? Y * L : 0
        pClean = head ? Array(v[o..<(o + Y)]) : []
    }

    func encoded() -> [Double] {
        [Double(layers.lowerBound), Double(layers.upperBound), Double(answerTokens), Double(rows), flops, Double(bytes)]
            + scores + sums + pZero + pClean
    }

    /// The sample's attribution from every stage's part (stage order): each layer's values come
    /// from the stage that owns it, copied, not added, so the bits are the whole model's.
    static func assemble(_ parts: [StagePart], layers L: Int, ffnWidth J: Int) throws -> SampleAttribution {
        guard let last = parts.last, let first = parts.first else { throw StageMessageError.malformed(count: 0) }
        let Y = first.answerTokens
        var scores = [Double](repeating: 0, count: L * J), sums = [Double](repeating: 0, count: Y * L)
        for p in parts {
            guard p.answerTokens == Y else { throw StageMessageError.malformed(count: p.answerTokens) }
            let n = p.layers.count
            for (o, l) in p.layers.enumerated() {
                for j in 0..<J { scores[l * J + j] = p.scores[o * J + j] }
                for m in 0..<Y { sums[m * L + l] = p.sums[m * n + o] }
            }
        }
        let pClean = (0..<(Y * L)).map { last.pClean[$0 / L] }
        return SampleAttribution(scores: scores, answerTokens: Y, probabilityClean: pClean, probabilityZero: last.pZero,
                                 attributionSums: sums, rows: first.rows, flops: parts.reduce(0) { $0 + $1.flops },
                                 peakChunkBytes: parts.map(\.bytes).max() ?? 0)
    }
}

/// A stage's message that does not have the shape its header announces (a bug or a mismatch
/// between the ranks' builds, never user input).
public enum StageMessageError: Error, LocalizedError {
    case malformed(count: Int)
    public var errorDescription: String? { "internal: a pipeline stage sent a malformed sample part (\(count) values)" }
    var count: Int { if case let .malformed(c) = self { return c }; return 0 }
}
