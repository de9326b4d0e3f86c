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
    /// Samples of the rank's share of a batch computed at once (SampleGradientWorkers): the BLAS
    /// thread count the rank was given, each worker then running on one BLAS thread.
    let workers: Int

    init(model: TransformerModel, slices: NeuronSlices, settings: TrainingSettings, items: [TrainingItem], mpi: MPIContext) {
        self.model = model
        self.slices = slices
        parameters = SliceParameters(model: model, slices: slices)
        self.settings = settings
        self.items = items
        self.mpi = mpi
        workers = BLASThreads.current
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

    /// Raised when a stop signal (SIGTERM, SIGUSR1) reached any rank: every rank stopped after
    /// the same batch, whose state the root wrote (`onStop`); the command exits 75 (requeue).
    struct Stopped: Error {}

    /// Fault injection for the test suite: CNL_TEST_STOP_AFTER_BATCHES=k raises the stop signal on
    /// the root once it has finished k batches in this process, as a preemption would.
    static let stopAfterBatches = ProcessInfo.processInfo.environment["CNL_TEST_STOP_AFTER_BATCHES"].flatMap(Int.init)
    var batchesRun = 0

    /// The number of batches of an epoch.
    var batchesPerEpoch: Int { (items.count + settings.batchSize - 1) / settings.batchSize }

    /// One epoch on every rank from batch `first` (a resumed epoch starts past the batches its
    /// state holds, with their summed losses `lossSum`); the sum of the batch losses on the root
    /// (nil elsewhere). After every batch the ranks agree on whether a stop signal came; if one
    /// did before the last batch, `onStop(batches done, loss sum)` runs on the root and every rank
    /// throws `Stopped` (at the last batch the caller finds `CheckpointKeeper.stopRequested`).
    func runEpoch(_ epoch: Int, from first: Int = 0, lossSum start: Double = 0, label: String, log: (String) -> Void,
                  onStop: (Int, Double) throws -> Void = { _, _ in }) throws -> Double? {
        let batches = Self.batches(count: items.count, batchSize: settings.batchSize, seed: settings.seed, epoch: epoch)
        let P = parameters.count
        let progress = mpi.rank == 0 ? ProgressReporter(total: batches.count, label: "batches (\(label), epoch \(epoch))") : nil
        var lossSum = start
        for b in first..<batches.count {
            let batch = batches[b]
            // Member k of the batch goes to rank k mod size: the sum does not depend on who adds what.
            let mine = stride(from: mpi.rank, to: batch.count, by: mpi.size).map { items[batch[$0]] }
            let sums = try SampleGradientWorkers.sum(mine, model: model, slices: slices, workers: workers, count: P + 1)
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
            batchesRun += 1
            if mpi.rank == 0, let k = Self.stopAfterBatches, batchesRun == k { CheckpointKeeper.requestStop() }
            if try anyRankStopped(), b + 1 < batches.count {
                if mpi.rank == 0 { try onStop(b + 1, lossSum) }
                throw Stopped()
            }
        }
        return mpi.rank == 0 ? lossSum : nil
    }

    /// Whether a stop signal reached any rank (every rank gets the same answer).
    func anyRankStopped() throws -> Bool {
        let mine: Int64 = CheckpointKeeper.stopRequested ? 1 : 0
        guard mpi.size > 1 else { return mine != 0 }
        let total = try mpi.sumInt64([mine])
        let all = try mpi.broadcast(withUnsafeBytes(of: (total?.first ?? 0).littleEndian) { Array($0) })
        let any = Int64(littleEndian: all.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }) != 0
        if any { CheckpointKeeper.requestStop() }   // every rank stops at the epoch's end too
        return any
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

    /// The state after epoch `epoch` (or, with `batches`, after that many batches of it): the
    /// slice values and Adam's step and moments.
    func writeState(epoch: Int, batches: Int = 0, lossSum: Double, identity: String, to path: String) throws {
        guard let adam else { return }
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try SafetensorsWriter.write([.float32("values", parameters.values(), shape: [parameters.count]),
                                     .float64("first_moment", adam.firstMoment, shape: [parameters.count]),
                                     .float64("second_moment", adam.secondMoment, shape: [parameters.count])],
                                    metadata: ["epoch": String(epoch), "batches": String(batches), "loss_sum": String(lossSum.bitPattern),
                                               "step": String(adam.step), "identity": identity], to: path)
    }

    /// Resumes from `path` when it holds this arm's state (same identity): the epoch it is in and
    /// the batches of it done (0: the epoch is complete), with the values written into the model
    /// and Adam restored; (0, 0) when there is none. Root only; `shareResumed` then gives every
    /// rank the values.
    func readState(identity: String, from path: String) -> (epoch: Int, batches: Int, lossSum: Double) {
        guard mpi.rank == 0, FileManager.default.fileExists(atPath: path), let file = try? SafetensorsFile(path: path),
              file.metadata["identity"] == identity, let epoch = file.metadata["epoch"].flatMap(Int.init),
              let batches = file.metadata["batches"].flatMap(Int.init), let loss = file.metadata["loss_sum"].flatMap(UInt64.init),
              let step = file.metadata["step"].flatMap(Int.init) else { return (0, 0, 0) }
        var values = [Float](repeating: 0, count: parameters.count)
        guard (try? values.withUnsafeMutableBufferPointer({ try file.read("values", into: $0) })) != nil,
              let m = try? file.readDoubles("first_moment"), let v = try? file.readDoubles("second_moment"),
              m.count == parameters.count, v.count == parameters.count else { return (0, 0, 0) }
        parameters.assign(values)
        adam = SliceAdam(count: parameters.count, learningRate: settings.learningRate, step: step, firstMoment: m, secondMoment: v)
        return (epoch, batches, Double(bitPattern: loss))
    }

    /// After the root's `readState`: its position to every rank, and the values if there is one.
    func shareResumed(_ at: (epoch: Int, batches: Int, lossSum: Double)) throws -> (epoch: Int, batches: Int, lossSum: Double) {
        guard mpi.size > 1 else { return at }
        let bytes = try mpi.broadcast(withUnsafeBytes(of: (Int64(at.epoch).littleEndian, Int64(at.batches).littleEndian)) { Array($0) })
        let resumed = bytes.withUnsafeBytes { (Int(Int64(littleEndian: $0.loadUnaligned(as: Int64.self))),
                                               Int(Int64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: Int64.self)))) }
        if resumed.0 > 0 {
            var values = mpi.rank == 0 ? parameters.values() : []
            try broadcastValues(&values)
        }
        return (epoch: resumed.0, batches: resumed.1, lossSum: at.lossSum)   // the loss sum matters on the root only
    }
}
