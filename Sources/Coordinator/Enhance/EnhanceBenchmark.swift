// `cnl bench enhance`: one epoch of enhance training in one process, timed (the speed goal is
// measured against PyTorch training of the same slices: scripts/bench-enhance.sh).
import Engine
import Foundation
import Shard

public struct EnhanceBenchmarkResult: Codable, Sendable {
    public var samples: Int
    public var tokens: Int
    public var neurons: Int
    public var values: Int
    public var seconds: Double
    public var threads: Int
    public var meanLoss: Double

    public func jsonString() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }
}

public enum EnhanceBenchmark {
    public static func run(trainConfig: String, neurons count: Int, seed: UInt64, batchSize: Int, threads: Int, writePlan: String?) throws -> EnhanceBenchmarkResult {
        BLASThreads.set(threads)
        let config = try RunConfig.load(path: trainConfig)
        let loaded = try ModelRegistry.load(path: config.model)
        let model = loaded.model, d = model.dimensions
        let set = try EvaluationSet.load(configPath: trainConfig, config: config, tokenizer: try loaded.requireTokenizer(),
                                         contextLength: d.contextLength, training: true)
        guard count <= d.neuronCount else { throw EvaluationError.tooManyNeurons(asked: count, neurons: d.neuronCount) }
        let chosen = RandomNeurons.uniform(count: count, of: d.neuronCount, seed: seed)
        let items = set.items.map { TrainingItem(prompt: $0.prompt, answer: $0.gold) }
        if let writePlan {
            let plan: [String: Any] = ["items": items.map { ["prompt": $0.prompt, "answer": $0.answer] }, "neurons": chosen, "batch_size": batchSize]
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: plan), to: writePlan)
        }
        let mpi = try MPIContext()
        defer { mpi.finalize() }
        let trainer = SliceTrainer(model: model, slices: NeuronSlices(neurons: chosen), settings: TrainingSettings(batchSize: batchSize),
                                   items: items, mpi: mpi)
        let start = Date()
        let loss = (try trainer.runEpoch(1, label: "bench", log: { _ in }) ?? .nan) / Double(max(trainer.batchesPerEpoch, 1))
        let seconds = Date().timeIntervalSince(start)
        return EnhanceBenchmarkResult(samples: items.count, tokens: items.map { $0.prompt.count + $0.answer.count - 1 }.reduce(0, +),
                                      neurons: chosen.count, values: trainer.parameters.count, seconds: seconds, threads: threads, meanLoss: loss)
    }
}
