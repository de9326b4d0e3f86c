// Threads over a rank's share of a training batch: each worker computes whole samples' slice gradients with one BLAS thread.
import Engine
import Foundation
import Shard

/// Why threads over samples rather than BLAS threads: a sample's training pass (forward with a
/// tape, backward, slice gradients) is independent work, and everything in it runs in parallel
/// (the attention, the element-wise passes, the vocabulary softmax), not only the matrix
/// products, whose 60–100 rows OpenBLAS splits poorly (one epoch of `cnl bench enhance` gained
/// only 1.44× from a second BLAS thread). The gradients are summed in fixed point, where the
/// order they arrive in does not change a bit, so the tuned weights are the same for any worker
/// count, as for any rank count. A worker holds one sample's gradient at a time, so a dense arm
/// (w/o located: every W_in row but the located) costs one more gradient's memory per worker.
enum SampleGradientWorkers {
    /// The sum of the samples' flattened slice gradients and losses (SliceTrainer's layout, `count`
    /// values each), `workers` samples at a time. The accumulator is made here and handed back, so
    /// it is never copied (a dense arm's holds 3 × 26.5 M limbs). The first failure is rethrown
    /// once every worker has stopped.
    static func sum(_ samples: [TrainingItem], model: TransformerModel, slices: NeuronSlices, workers: Int,
                    count: Int) throws -> ExactAccumulator {
        let w = min(workers, samples.count)
        guard w > 1 else {
            var sums = ExactAccumulator(count: count)
            for item in samples { try sums.add(flattened(try model.sliceGradient(prompt: item.prompt, answer: item.answer, slices: slices))) }
            return sums
        }
        let shared = Shared(samples: samples, model: model, slices: slices, count: count)
        let blas = BLASThreads.current
        BLASThreads.set(1)
        defer { BLASThreads.set(blas) }
        let finished = DispatchGroup()
        for _ in 0..<w {
            finished.enter()
            let thread = Thread {
                shared.work()
                finished.leave()
            }
            thread.stackSize = 8 << 20   // as the attribution's row workers
            thread.start()
        }
        finished.wait()
        if let failure = shared.failure { throw failure }
        return shared.sums
    }

    static func flattened(_ g: SliceGradient) -> [Double] {
        var v = g.flattened
        v.append(g.loss)
        return v
    }

    final class Shared: @unchecked Sendable {
        let samples: [TrainingItem]
        let model: TransformerModel
        let slices: NeuronSlices
        private let lock = NSLock()
        // Under `lock`:
        private var next = 0
        private(set) var sums: ExactAccumulator
        private(set) var failure: Error?

        init(samples: [TrainingItem], model: TransformerModel, slices: NeuronSlices, count: Int) {
            (self.samples, self.model, self.slices) = (samples, model, slices)
            sums = ExactAccumulator(count: count)
        }

        /// Claims samples until none is left (or one failed); the sum is taken under the lock.
        func work() {
            while true {
                lock.lock()
                guard failure == nil, next < samples.count else { lock.unlock(); return }
                let i = next
                next += 1
                lock.unlock()
                do {
                    let v = SampleGradientWorkers.flattened(try model.sliceGradient(prompt: samples[i].prompt, answer: samples[i].answer, slices: slices))
                    lock.lock(); defer { lock.unlock() }
                    try sums.add(v)
                } catch {
                    lock.lock(); if failure == nil { failure = error }; lock.unlock()
                }
            }
        }
    }
}
