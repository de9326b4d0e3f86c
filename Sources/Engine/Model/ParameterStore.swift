// All weights of a model in one contiguous Float buffer, with views derived from one size table.
import Foundation

/// One weight tensor of an architecture: its name in the HF checkpoint (the canonical name)
/// and its shape in the orientation Engine computes with (linear weights are [out, in]).
public struct ParameterSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var count: Int { shape.reduce(1, *) }
    public init(_ name: String, _ shape: [Int]) { self.name = name; self.shape = shape }
}

/// The weights, allocated once from the architecture's size table (STYLE rule 4). Views are
/// pointers into the buffer, valid as long as the store lives (the model owns it).
public final class ParameterStore: @unchecked Sendable {
    public let specs: [ParameterSpec]
    public let offsets: [String: Int]
    public let count: Int
    public let buffer: UnsafeMutableBufferPointer<Float>

    public init(specs: [ParameterSpec]) {
        var offsets: [String: Int] = [:]
        var total = 0
        for s in specs {
            offsets[s.name] = total
            // 16-float alignment keeps every view 64-byte aligned for the BLAS kernels.
            total += (s.count + 15) / 16 * 16
        }
        self.specs = specs
        self.offsets = offsets
        self.count = total
        buffer = .allocate(capacity: max(total, 1))
        buffer.initialize(repeating: 0)
    }

    deinit { buffer.deallocate() }

    public var parameterCount: Int { specs.reduce(0) { $0 + $1.count } }

    /// The view of parameter `name`. Architectures only ask for names in their own table.
    public func pointer(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let o = offsets[name] else {
            preconditionFailure("internal: parameter '\(name)' is not in the architecture's table")
        }
        return buffer.baseAddress! + o
    }

    public func view(_ name: String) -> UnsafeMutableBufferPointer<Float> {
        let spec = specs.first { $0.name == name }!
        return UnsafeMutableBufferPointer(start: pointer(name), count: spec.count)
    }

    public func optionalPointer(_ name: String) -> UnsafeMutablePointer<Float>? {
        offsets[name] == nil ? nil : pointer(name)
    }
}

/// How one canonical parameter is found in a checkpoint: the stored name and a conversion
/// applied after reading (transposes and permutations that checkpoint formats introduce).
public struct ParameterSource {
    public enum Transform { case none, transpose, unpermuteRotaryHalves(heads: Int) }
    public var stored: String
    public var transform: Transform
    public init(_ stored: String, _ transform: Transform = .none) { self.stored = stored; self.transform = transform }
}

extension ParameterStore {
    /// Fills every parameter from `source` through `keyMap` (canonical name → stored name and
    /// transform). Lists every missing or unexpected tensor at once (STYLE rule 6), then checks
    /// shapes, then reads each tensor straight into its view (no second full-size copy).
    public func load(from source: TensorSource, keyMap: [String: ParameterSource], ignorable: (String) -> Bool) throws {
        let wanted = Set(keyMap.values.map(\.stored))
        let missing = specs.compactMap { spec -> String? in
            guard let src = keyMap[spec.name] else { return spec.name }
            return source.tensors[src.stored] == nil ? src.stored : nil
        }
        let unexpected = source.tensors.keys.filter { !wanted.contains($0) && !ignorable($0) }.sorted()
        if !missing.isEmpty || !unexpected.isEmpty {
            throw CheckpointError.tensorsMismatch(path: source.path, missing: missing.sorted(), unexpected: unexpected)
        }
        var scratch: [Float] = []
        for spec in specs {
            let src = keyMap[spec.name]!
            let entry = try source.entry(src.stored)
            let expected: [Int]
            switch src.transform {
            case .transpose: expected = spec.shape.count == 2 ? [spec.shape[1], spec.shape[0]] : spec.shape
            default: expected = spec.shape
            }
            guard entry.shape == expected || (entry.elementCount == spec.count && squeezed(entry.shape) == squeezed(expected)) else {
                throw CheckpointError.shapeMismatch(path: source.path, tensor: src.stored, expected: expected, found: entry.shape)
            }
            let dst = view(spec.name)
            switch src.transform {
            case .none:
                try source.read(src.stored, into: dst)
            case .transpose:
                // Conv1D-style [in, out] → [out, in].
                if scratch.count < spec.count { scratch = [Float](repeating: 0, count: spec.count) }
                try scratch.withUnsafeMutableBufferPointer { tmp in
                    let t = UnsafeMutableBufferPointer(rebasing: tmp[0..<spec.count])
                    try source.read(src.stored, into: t)
                    let (rowsOut, cols) = (spec.shape[0], spec.shape[1])
                    for i in 0..<cols { for o in 0..<rowsOut { dst[o * cols + i] = t[i * rowsOut + o] } }
                }
            case let .unpermuteRotaryHalves(heads):
                // llama.cpp's converter reorders each head's rows of q/k from HF's "halves"
                // layout (rotate_half) to interleaved pairs: GGUF row 2i+s of a head is HF row
                // s·E/2 + i. Undo it, as transformers' GGUF loader does.
                if scratch.count < spec.count { scratch = [Float](repeating: 0, count: spec.count) }
                try scratch.withUnsafeMutableBufferPointer { tmp in
                    let t = UnsafeMutableBufferPointer(rebasing: tmp[0..<spec.count])
                    try source.read(src.stored, into: t)
                    let (rowsOut, cols) = (spec.shape[0], spec.shape[1])
                    let e = rowsOut / heads
                    for h in 0..<heads {
                        for i in 0..<(e / 2) {
                            for s in 0..<2 {
                                let from = (h * e + 2 * i + s) * cols
                                let to = (h * e + s * (e / 2) + i) * cols
                                for c in 0..<cols { dst[to + c] = t[from + c] }
                            }
                        }
                    }
                }
            }
        }
    }

    private func squeezed(_ s: [Int]) -> [Int] { s.filter { $0 != 1 } }
}
