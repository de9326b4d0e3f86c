// Threads over row batches: each worker takes whole batches with one BLAS thread, and runs ahead into the next sample.
import Foundation

/// Why threads over batches rather than BLAS threads: a batch is independent work (its own
/// tapes, its own slice of the sample's score), and everything in it runs in parallel (the
/// attention, the softmax, the element-wise passes), not only the matrix products, and the
/// low layers' short products do not have to be split. A worker takes, in this order: the next
/// unclaimed batch of the earliest open sample; else the clean pass of the next sample (at most
/// `2·workers + 2` samples open, so memory stays bounded); else it waits. The caller's thread
/// only merges finished samples, in order, and hands them over.
final class RowWorkers: @unchecked Sendable {
    let attributor: SampleAttributor
    let samples: [(prompt: [Int], answer: [Int])]
    private let condition = NSCondition()
    // Under `condition`:
    private var nextToOpen = 0
    private var open: [Int: OpenSample] = [:]
    private var stopped = false
    /// Samples open at once: enough that a worker is rarely left waiting while another finishes
    /// the last batch of the oldest sample (an open sample holds only its cache and captures).
    private var window: Int { 2 * attributor.workers + 2 }

    final class OpenSample {
        var plan: SampleAttributor.SamplePlan?
        var failure: Error?
        var nextBatch = 0
        var parts: [BatchResult?] = []
        var remaining = 0
        var ready: Bool { failure != nil || (plan != nil && remaining == 0) }
    }

    init(attributor: SampleAttributor, samples: [(prompt: [Int], answer: [Int])]) {
        self.attributor = attributor
        self.samples = samples
    }

    func run(onResult: (Int, SampleAttribution) throws -> Void) throws {
        let blas = BLASThreads.current
        BLASThreads.set(1)
        defer { BLASThreads.set(blas) }
        let finished = DispatchGroup()
        for w in 0..<attributor.workers {
            finished.enter()
            let thread = Thread { [self] in
                work(workspace: attributor.workspaces[w])
                finished.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        defer {
            condition.lock(); stopped = true; condition.broadcast(); condition.unlock()
            finished.wait()
        }
        for i in samples.indices {
            condition.lock()
            while !(open[i]?.ready ?? false) { condition.wait() }
            let sample = open.removeValue(forKey: i)!
            condition.broadcast()        // room for another open sample
            condition.unlock()
            if let failure = sample.failure { throw SampleAttributionFailure(index: i, underlying: failure) }
            try onResult(i, attributor.merge(sample.plan!, sample.parts.map { $0! }))
        }
    }

    private func work(workspace: RowWorkspace) {
        condition.lock()
        defer { condition.unlock() }
        while !stopped {
            // 1. A batch of the earliest open sample that has one left.
            if let sample = open.filter({ $0.value.plan != nil && $0.value.nextBatch < $0.value.plan!.batches.count })
                .min(by: { $0.key < $1.key })?.value {
                let b = sample.nextBatch
                sample.nextBatch += 1
                let plan = sample.plan!
                condition.unlock()
                let part = attributor.runBatch(plan, rows: plan.batches[b], workspace: workspace)
                condition.lock()
                sample.parts[b] = part
                sample.remaining -= 1
                if sample.remaining == 0 { condition.broadcast() }
                continue
            }
            // 2. The clean pass of the next sample.
            if nextToOpen < samples.count, open.count < window {
                let i = nextToOpen
                nextToOpen += 1
                let sample = OpenSample()
                open[i] = sample
                condition.unlock()
                var plan: SampleAttributor.SamplePlan?, failure: Error?
                do { plan = try attributor.prepare(prompt: samples[i].prompt, answer: samples[i].answer) } catch { failure = error }
                condition.lock()
                if let plan {
                    sample.parts = Array(repeating: nil, count: plan.batches.count)
                    sample.remaining = plan.batches.count
                    sample.plan = plan
                } else {
                    sample.failure = failure
                    nextToOpen = samples.count     // nothing after a failed sample is handed over
                }
                condition.broadcast()
                continue
            }
            if nextToOpen >= samples.count && !open.values.contains(where: { $0.plan == nil && $0.failure == nil }) {
                return    // every batch there will ever be is claimed
            }
            condition.wait()
        }
    }
}
