// Erase (SPEC "Table 3: erase"): zero the W_in rows and biases of chosen neurons in a loaded model, and undo it.
import Foundation

/// What `TransformerModel.erase` changed, to put back bit for bit: an evaluation study loads
/// the model once and erases one neuron set after another (no copy of the checkpoint is made).
public struct NeuronErasure: Sendable {
    /// Flat indices l·J + j of the erased neurons, ascending.
    public let neurons: [Int]
    /// Each erased neuron's W_in row [D] and bias, as they were.
    fileprivate let savedRows: [Float]
    fileprivate let savedBiases: [Float]
}

public enum NeuronIndexError: Error, LocalizedError, Equatable {
    case outOfRange(index: Int, neurons: Int)

    public var errorDescription: String? {
        switch self {
        case let .outOfRange(index, neurons):
            return "neuron index \(index) is outside the model's 0..<\(neurons) FFN neurons (l·J + j); the neuron set belongs to another model"
        }
    }
}

extension TransformerModel {
    /// Sets row j of W_in and bias j to zero for every neuron l·J + j of `neurons`, so that
    /// ω_l[j] = 0 at every position: in a gated FFN (Llama's SwiGLU) act(0)·u = 0 turns the
    /// neuron off, in GPT-2/GPT-J gelu(0) = 0 does. Duplicates are erased once.
    public func erase(_ neurons: [Int]) throws -> NeuronErasure {
        let d = dimensions
        let sorted = Array(Set(neurons)).sorted()
        if let bad = sorted.first(where: { $0 < 0 || $0 >= d.neuronCount }) {
            throw NeuronIndexError.outOfRange(index: bad, neurons: d.neuronCount)
        }
        var rows = [Float](repeating: 0, count: sorted.count * d.width)
        var biases = [Float](repeating: 0, count: sorted.count)
        for (k, n) in sorted.enumerated() {
            let ffnIn = blocks[n / d.ffnWidth].ffnIn, j = n % d.ffnWidth
            let row = ffnIn.weight + j * ffnIn.inFeatures
            for i in 0..<ffnIn.inFeatures { rows[k * d.width + i] = row[i]; row[i] = 0 }
            if let b = ffnIn.bias { biases[k] = b[j]; b[j] = 0 }
        }
        return NeuronErasure(neurons: sorted, savedRows: rows, savedBiases: biases)
    }

    /// Puts back what `erase` zeroed (the model is then bitwise the loaded one again).
    public func restore(_ erasure: NeuronErasure) {
        let d = dimensions
        for (k, n) in erasure.neurons.enumerated() {
            let ffnIn = blocks[n / d.ffnWidth].ffnIn, j = n % d.ffnWidth
            let row = ffnIn.weight + j * ffnIn.inFeatures
            for i in 0..<ffnIn.inFeatures { row[i] = erasure.savedRows[k * d.width + i] }
            if let b = ffnIn.bias { b[j] = erasure.savedBiases[k] }
        }
    }
}
