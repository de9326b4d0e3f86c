// Adam over the chosen neurons' slices only (SPEC "Table 2: enhance"): the slices are read out of
// the loaded model's weights, stepped, and written back; every other weight is never touched.
import Foundation

extension SliceGradient {
    /// The gradient as one vector in the slices' order: W_in rows [N, D], W_in biases [N], W_up rows,
    /// W_up biases, W_out columns (each block present or not as in `SliceParameters`).
    public var flattened: [Double] {
        inWeight + (inBias ?? []) + (upWeight ?? []) + (upBias ?? []) + (outWeight ?? [])
    }
}

/// Where the slices of `NeuronSlices` live in a loaded model: views into its weights, in the order
/// of `SliceGradient.flattened`.
public struct SliceParameters {
    public let slices: NeuronSlices
    /// Element pointers, one per slice value.
    private let elements: [UnsafeMutablePointer<Float>]

    public var count: Int { elements.count }

    public init(model: TransformerModel, slices: NeuronSlices) {
        let d = model.dimensions
        let (D, J) = (d.width, d.ffnWidth)
        var inW: [UnsafeMutablePointer<Float>] = [], inB: [UnsafeMutablePointer<Float>] = []
        var upW: [UnsafeMutablePointer<Float>] = [], upB: [UnsafeMutablePointer<Float>] = [], outW: [UnsafeMutablePointer<Float>] = []
        for n in slices.neurons {
            let (l, j) = (n / J, n % J)
            let block = model.block(l)
            for i in 0..<D { inW.append(block.ffnIn.weight + j * D + i) }          // row j of [J, D]
            if let b = block.ffnIn.bias { inB.append(b + j) }
            if slices.upAndDown {
                if let up = block.ffnUp {
                    for i in 0..<D { upW.append(up.weight + j * D + i) }
                    if let b = up.bias { upB.append(b + j) }
                }
                for i in 0..<D { outW.append(block.ffnDown.weight + i * J + j) }   // column j of [D, J]
            }
        }
        self.slices = slices
        elements = inW + inB + upW + upB + outW
    }

    /// The current values.
    public func values() -> [Float] { elements.map { $0.pointee } }

    /// Writes `values` (in this order) into the model.
    public func assign(_ values: [Float]) {
        precondition(values.count == elements.count, "internal: \(values.count) values for \(elements.count) slice elements")
        for (p, v) in zip(elements, values) { p.pointee = v }
    }
}

/// torch.optim.Adam's update (no weight decay, no amsgrad) on the slice values:
///   m ← β₁m + (1 − β₁)g,  v ← β₂v + (1 − β₂)g²,
///   p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
/// with m, v and the arithmetic in Double, the parameter rounded to float32 once per step.
public struct SliceAdam: Sendable {
    public var learningRate = 1e-5
    public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8
    public private(set) var step = 0
    public private(set) var firstMoment: [Double]
    public private(set) var secondMoment: [Double]

    public init(count: Int, learningRate: Double = 1e-5) {
        self.learningRate = learningRate
        firstMoment = [Double](repeating: 0, count: count)
        secondMoment = [Double](repeating: 0, count: count)
    }

    /// Adam as a checkpoint left it, `step` steps in.
    public init(count: Int, learningRate: Double, step: Int, firstMoment: [Double], secondMoment: [Double]) {
        precondition(firstMoment.count == count && secondMoment.count == count, "internal: Adam moments of another size")
        self.learningRate = learningRate
        self.step = step
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
    }

    /// One step of `parameters` with `gradient` (the batch's mean gradient, `flattened`).
    public mutating func apply(_ gradient: [Double], to parameters: SliceParameters) {
        precondition(gradient.count == parameters.count && gradient.count == firstMoment.count,
                     "internal: a gradient of \(gradient.count) for \(parameters.count) slice values")
        step += 1
        let c1 = 1 - pow(beta1, Double(step)), c2 = (1 - pow(beta2, Double(step))).squareRoot()
        let stepSize = learningRate / c1
        var p = parameters.values()
        for i in 0..<p.count {
            let g = gradient[i]
            firstMoment[i] = beta1 * firstMoment[i] + (1 - beta1) * g
            secondMoment[i] = beta2 * secondMoment[i] + (1 - beta2) * g * g
            let denominator = secondMoment[i].squareRoot() / c2 + epsilon
            p[i] = Float(Double(p[i]) - stepSize * firstMoment[i] / denominator)
        }
        parameters.assign(p)
    }
}
