// Pipeline stages in one process (a thread per stage, queues for links): the same bits as the
// whole model on random llama, gpt2 (tied), gptj and gemma3 (whose sliding window of 8 the longest
// sample outgrows); the balancing rule against brute force.
import Engine
import Foundation
import XCTest

/// Stages joined by in-memory mailboxes: what Shard's MPI link does, with threads.
final class MailboxStageLink: StageLink {
    final class Hub: @unchecked Sendable {
        let condition = NSCondition()
        var boxes: [String: [[Double]]] = [:]
        func put(_ key: String, _ v: [Double]) { condition.lock(); boxes[key, default: []].append(v); condition.broadcast(); condition.unlock() }
        func take(_ key: String, wait: Bool) -> [Double]? {
            condition.lock(); defer { condition.unlock() }
            while boxes[key, default: []].isEmpty { if !wait { return nil }; condition.wait() }
            return boxes[key]!.removeFirst()
        }
    }
    let hub: Hub, stage: Int
    init(hub: Hub, stage: Int) { self.hub = hub; self.stage = stage }
    struct Mismatch: Error {}
    private func send(_ p: UnsafePointer<Float>, _ n: Int, to: Int, _ kind: String) { hub.put("\(kind) \(stage)→\(to)", (0..<n).map { Double(p[$0]) }) }
    private func receive(_ p: UnsafeMutablePointer<Float>, _ n: Int, from: Int, _ kind: String) throws {
        let v = hub.take("\(kind) \(from)→\(stage)", wait: true)!
        guard v.count == n else { throw Mismatch() }
        for i in 0..<n { p[i] = Float(v[i]) }
    }
    func sendToNext(_ values: UnsafePointer<Float>, count: Int) throws { send(values, count, to: stage + 1, "fwd") }
    func receiveFromPrevious(_ values: UnsafeMutablePointer<Float>, count: Int) throws { try receive(values, count, from: stage - 1, "fwd") }
    func sendToPrevious(_ values: UnsafePointer<Float>, count: Int) throws { send(values, count, to: stage - 1, "bwd") }
    func receiveFromNext(_ values: UnsafeMutablePointer<Float>, count: Int) throws { try receive(values, count, from: stage + 1, "bwd") }
    func sendPart(_ values: [Double]) throws { hub.put("part \(stage)", values) }
    func receivePart(from stage: Int, wait: Bool) throws -> [Double]? { hub.take("part \(stage)", wait: wait) }
    func finishSends() throws {}
}

final class StagePipelineTests: XCTestCase {
    let samples: [(prompt: [Int], answer: [Int])] = [([5, 9, 17, 3], [40, 41]), ([1, 2], [7, 8, 9]), ([30, 31, 32, 33, 34, 35], [2]), ([7], [8, 9]),
                                                     ([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], [9, 7])]

    /// Runs `stages` stage models of `path` on threads; stage 0's results in order.
    func staged(_ path: String, stages: Int, options: AttributionOptions) throws -> [SampleAttribution] {
        let hub = MailboxStageLink.Hub()
        let models = try (0..<stages).map { try ModelRegistry.load(path: path, stage: StageRequest(index: $0, count: stages)).model }
        let attributors = try models.enumerated().map { s, m in try StageAttributor(model: m, options: options, link: MailboxStageLink(hub: hub, stage: s)) }
        var results: [SampleAttribution] = []
        final class Errors: @unchecked Sendable { var list: [Error] = []; let lock = NSLock() }
        let errors = Errors()
        let group = DispatchGroup()
        for s in 1..<stages {
            group.enter()
            let t = Thread {
                do { try attributors[s].attribute(samples: self.samples) { _, _ in XCTFail("only stage 0 hands samples over") } } catch {
                    errors.lock.lock(); errors.list.append(error); errors.lock.unlock()
                }
                group.leave()
            }
            t.stackSize = 8 << 20
            t.start()
        }
        try attributors[0].attribute(samples: samples) { i, r in
            XCTAssertEqual(i, results.count, "samples in order")
            results.append(r)
        }
        group.wait()
        if let e = errors.list.first { throw e }
        return results
    }

    func testStagesGiveTheWholeModelsBits() throws {
        for name in ["llama-f32", "gpt2-f32", "gptj-f32", "gemma3"] {
            let config = name == "gemma3" ? "oracle/gemma3/random/config.json" : "oracle/models/\(name)/config.json"
            let dir = URL(fileURLWithPath: try Fixtures.require(config)).deletingLastPathComponent().path
            let whole = try ModelRegistry.load(path: dir).model
            // A row budget of 5 makes many batches that straddle layers, tokens and stages.
            let options = AttributionOptions(steps: 4, rowBudget: 5)
            let reference = try samples.map { try SampleAttributor(model: whole, options: options).attribute(prompt: $0.prompt, answer: $0.answer) }
            for stages in [2, 3] {
                let got = try staged(dir, stages: stages, options: options)
                XCTAssertEqual(got.count, samples.count, "\(name) × \(stages) stages")
                for (i, (g, r)) in zip(got, reference).enumerated() {
                    XCTAssertEqual(g.scores, r.scores, "\(name), \(stages) stages, sample \(i): the same bits")
                    XCTAssertEqual(g.attributionSums, r.attributionSums, "\(name), \(stages) stages, sample \(i)")
                    XCTAssertEqual(g.probabilityClean, r.probabilityClean)
                    XCTAssertEqual(g.probabilityZero.map(\.bitPattern), r.probabilityZero.map(\.bitPattern))
                    XCTAssertEqual(g.rows, r.rows)
                    XCTAssertEqual(g.answerTokens, r.answerTokens)
                }
            }
            // Each stage holds only its own tensors: no stage holds every layer, and together they
            // hold the whole model (the tied gpt2 embedding twice: first stage and head).
            let parts = try (0..<3).map { try ModelRegistry.load(path: dir, stage: StageRequest(index: $0, count: 3)).model }
            XCTAssertEqual(parts.flatMap { Array($0.slice.layers) }, Array(0..<whole.dimensions.layers), name)
            XCTAssertFalse(parts.contains { $0.slice.layers.count == whole.dimensions.layers }, name)
            let held = parts.map(\.parameters.parameterCount).reduce(0, +)
            let embedding = whole.dimensions.vocabulary * whole.dimensions.width
            XCTAssertEqual(held, whole.parameters.parameterCount + (whole.tiedEmbeddings ? embedding : 0), name)
        }
    }

    /// The balanced cut against every possible cut of up to 9 layers: the same largest cost.
    func testPartitionMinimizesTheLargestStageCost() throws {
        let cost = StagePartition.RowCost(block: 3.5, head: 28)
        // The two rules' layer costs, written out: rows crossing layer k (k + 1 per entering
        // row, the head's L on the last), or the parameters held (embedding first, head last).
        XCTAssertEqual(StagePartition.layerCosts(layers: 4, rowCost: cost, balance: .work), [3.5, 7, 10.5, 14 + 4 * 28])
        XCTAssertEqual(StagePartition.layerCosts(layers: 4, rowCost: cost, balance: .weights), [3.5 + 28, 3.5, 3.5, 3.5 + 28])
        for balance in StageBalance.allCases {
            for layers in 2...9 {
                let c = StagePartition.layerCosts(layers: layers, rowCost: cost, balance: balance)
                for stages in 1...min(layers, 4) {
                    let ranges = try StagePartition.balanced(layers: layers, stages: stages, rowCost: cost, balance: balance)
                    XCTAssertEqual(ranges.count, stages)
                    XCTAssertEqual(ranges.first?.lowerBound, 0); XCTAssertEqual(ranges.last?.upperBound, layers)
                    for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound); XCTAssertFalse(a.isEmpty) }
                    let got = ranges.map { r in r.reduce(0.0) { $0 + c[$1] } }.max()!
                    // Brute force: every choice of stages − 1 cut points among layers − 1 places.
                    var best = Double.infinity
                    func search(_ start: Int, _ left: Int, _ worst: Double) {
                        if left == 1 { best = min(best, max(worst, (start..<layers).reduce(0.0) { $0 + c[$1] })); return }
                        guard start + 1 <= layers - left + 1 else { return }
                        for end in (start + 1)...(layers - left + 1) { search(end, left - 1, max(worst, (start..<end).reduce(0.0) { $0 + c[$1] })) }
                    }
                    search(0, stages, 0)
                    XCTAssertEqual(got, best, accuracy: 1e-9, "\(balance): \(layers) layers, \(stages) stages: \(ranges)")
                }
            }
        }
        // Work gives the top layers (and the head) shorter stages; weights gives even ones.
        let smol = try StagePartition.balanced(layers: 30, stages: 3, rowCost: cost)
        XCTAssertGreaterThan(smol[0].count, smol[2].count, "\(smol)")
        let even = try StagePartition.balanced(layers: 30, stages: 3, rowCost: StagePartition.RowCost(block: 1, head: 0.1), balance: .weights)
        XCTAssertEqual(even, [0..<10, 10..<20, 20..<30])
    }

    func testImpossibleStageCountsAreRefused() throws {
        let cost = StagePartition.RowCost(block: 1, head: 1)
        XCTAssertThrowsError(try StagePartition.balanced(layers: 3, stages: 4, rowCost: cost, path: "m")) {
            XCTAssertEqual($0 as? StageError, .tooManyStages(path: "m", stages: 4, layers: 3))
            XCTAssertTrue($0.localizedDescription.contains("at most --stages 3"), $0.localizedDescription)
        }
        XCTAssertThrowsError(try StagePartition.balanced(layers: 1, stages: 2, rowCost: cost, path: "m")) {
            XCTAssertTrue($0.localizedDescription.contains("at least 2 layers"), $0.localizedDescription)
        }
        // A stage's model cannot be attributed as if it were whole.
        let dir = URL(fileURLWithPath: try Fixtures.require("oracle/models/llama-f32/config.json")).deletingLastPathComponent().path
        let stage = try ModelRegistry.load(path: dir, stage: StageRequest(index: 1, count: 2)).model
        XCTAssertThrowsError(try SampleAttributor(model: stage))
    }
}
