// Data-parallel training of one enhance arm (SPEC "Table 2: enhance"): every rank takes a share
// of each batch, the slice gradients are summed in fixed point (ExactAccumulator), the root
// steps Adam and sends the new slice values to every rank, so the tuned weights are the same
// bits for any rank count. The state after each epoch is a checkpoint a rerun resumes from.
import Engine
import Foundation
import Shard

/// Hyperparameters of every arm (the paper's, except where the user sets them).
public struct TrainingSettings: Codable, Sendable, Equatable {
    public var learningRate: Double
    public var batchSize: Int
    /// Seed of each epoch's shuffle.
    public var seed: UInt64
    /// Also train each neuron's W_up row and W_out column (not only its W_in row and bias).
    public var upAndDown: Bool

    public init(learningRate: Double = 1e-5, batchSize: Int = 8, seed: UInt64 = 0, upAndDown: Bool = false) {
        (self.learningRate, self.batchSize, self.seed, self.upAndDown) = (learningRate, batchSize, seed, upAndDown)
    }

    enum CodingKeys: String, CodingKey { case learningRate = "lr", batchSize = "batch_size", seed, upAndDown = "up_and_down" }
}

/// One (prompt, answer) pair trained on: the loss is the answer tokens' mean NLL.
public struct TrainingItem: Codable, Sendable, Equatable {
    public var prompt: [Int]
    public var answer: [Int]
}

final class SliceTrainer {
    let model: TransformerModel
    let slices: NeuronSlices
    let parameters: SliceParameters
    let settings: TrainingSettings
    let items: [TrainingItem]
    let mpi: MPIContext
    /// Adam's state lives on the root only (the other ranks receive the stepped values).
    var adam: SliceAdam?

    init(model: TransformerModel, slices: NeuronSlices, settings: TrainingSettings, items: [TrainingItem], mpi: MPIContext) {
        self.model = model
        self.slices = slices
        parameters = SliceParameters(model: model, slices: slices)
        self.settings = settings
        self.items = items
        self.mpi = mpi
        if mpi.rank == 0 { adam = SliceAdam(count: parameters.count, learningRate: settings.learningRate) }
    }

    /// The order of epoch `epoch` (1-based): a Fisher–Yates shuffle seeded by the settings' seed
    /// and the epoch, so a resumed run shuffles as an uninterrupted one.
    static func order(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var mix = SplitMix64(seed: seed ^ (0xE7A5_C0DE_0000_0000 &+ UInt64(epoch)))
        return ABSplit(count: count, seed: mix.next()).permutation
    }

    /// The batches of an epoch: runs of `batchSize` in the shuffled order; the last one may be
    /// smaller (torch's DataLoader without drop_last).
    static func batches(count: Int, batchSize: Int, seed: UInt64, epoch: Int) -> [[Int]] {
        let o = order(count: count, seed: seed, epoch: epoch)
        return stride(from: 0, to: count, by: batchSize).map { Array(o[$0..<min($0 + batchSize, count)]) }
    }

    /// One epoch on every rank; the mean training loss of its batches on the root (nil elsewhere).
    func runEpoch(_ epoch: Int, label: String, log: (String) -> Void) throws -> Double? {
        let batches = Self.batches(count: items.count, batchSize: settings.batchSize, seed: settings.seed, epoch: epoch)
        let P = parameters.count
        let progress = mpi.rank == 0 ? ProgressReporter(total: batches.count, label: "batches (\(label), epoch \(epoch))") : nil
        var lossSum = 0.0
        for (b, batch) in batches.enumerated() {
            // Member k of the batch goes to rank k mod size: the sum does not depend on who adds what.
            var sums = ExactAccumulator(count: P + 1)
            for k in stride(from: mpi.rank, to: batch.count, by: mpi.size) {
                let item = items[batch[k]]
                let g = try model.sliceGradient(prompt: item.prompt, answer: item.answer, slices: slices)
                var v = g.flattened
                v.append(g.loss)
                try sums.add(v)
            }
            let reduced = try mpi.sumInt64(sums.limbs)
            var values: [Float] = []
            if let reduced, adam != nil {
                let means = ExactAccumulator(count: P + 1, limbs: reduced, additions: Int64(batch.count)).means()
                lossSum += means[P]
                adam!.apply(Array(means[0..<P]), to: parameters)   // in place: the moments are not copied
                if mpi.size > 1 { values = parameters.values() }
            }
            try broadcastValues(&values)
            progress?.update(done: b + 1)
        }
        return mpi.rank == 0 ? lossSum / Double(max(batches.count, 1)) : nil
    }

    /// The root's slice values to every rank (which writes them into its model).
    func broadcastValues(_ values: inout [Float]) throws {
        guard mpi.size > 1 else { return }
        let bytes = mpi.rank == 0 ? values.withUnsafeBytes { Array($0) } : []
        let got = try mpi.broadcast(bytes)
        if mpi.rank != 0 {
            precondition(got.count == parameters.count * 4, "internal: \(got.count) bytes of slice values for \(parameters.count)")
            values = got.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            parameters.assign(values)
        }
    }

    // MARK: Checkpoints (root)

    /// The state after epoch `epoch`: the slice values and Adam's step and moments.
    func writeState(epoch: Int, identity: String, to path: String) throws {
        guard let adam else { return }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try SafetensorsWriter.write([.float32("values", parameters.values(), shape: [parameters.count]),
                                     .float64("first_moment", adam.firstMoment, shape: [parameters.count]),
                                     .float64("second_moment", adam.secondMoment, shape: [parameters.count])],
                                    metadata: ["epoch": String(epoch), "step": String(adam.step), "identity": identity], to: path)
    }

    /// Resumes from `path` when it holds this arm's state (same identity): the epoch it ended,
    /// with the values written into the model and Adam restored; 0 when there is none. Root
    /// only; `shareResumed` then gives every rank the values.
    func readState(identity: String, from path: String) -> Int {
        guard mpi.rank == 0, FileManager.default.fileExists(atPath: path), let file = try? SafetensorsFile(path: path),
              file.metadata["identity"] == identity, let epoch = file.metadata["epoch"].flatMap(Int.init),
              let step = file.metadata["step"].flatMap(Int.init) else { return 0 }
        var values = [Float](repeating: 0, count: parameters.count)
        guard (try? values.withUnsafeMutableBufferPointer({ try file.read("values", into: $0) })) != nil,
              let m = try? file.readDoubles("first_moment"), let v = try? file.readDoubles("second_moment"),
              m.count == parameters.count, v.count == parameters.count else { return 0 }
        parameters.assign(values)
        adam = SliceAdam(count: parameters.count, learningRate: settings.learningRate, step: step, firstMoment: m, secondMoment: v)
        return epoch
    }

    /// After the root's `readState`: the epoch to every rank, and the values if it is past 0.
    func shareResumed(epoch: Int) throws -> Int {
        guard mpi.size > 1 else { return epoch }
        let e = try mpi.broadcast(withUnsafeBytes(of: Int64(epoch).littleEndian) { Array($0) })
        let resumed = Int(Int64(littleEndian: e.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
        if resumed > 0 {
            var values = mpi.rank == 0 ? parameters.values() : []
            try broadcastValues(&values)
        }
        return resumed
    }
}
