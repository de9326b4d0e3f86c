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

/// Where a model's weights live. `.own`: this process's memory (read from the checkpoint).
/// `.skeleton`: reserved but never read or touched (a plan-time model: its config, shapes and
/// tokenizer are checked, the weights are read later by whoever runs it; the pages cost no
/// memory). `.shared`: a buffer that several processes map (Shard's node-shared window),
/// filled by one of them.
public enum WeightPlacement {
    case own, skeleton
    case shared(SharedWeightStorage)
}

/// A buffer several processes share; Engine only asks for it and says when it is filled
/// (Shard implements it with an MPI-3 shared-memory window; Engine never calls MPI).
public protocol SharedWeightStorage: AnyObject {
    /// The shared buffer of `count` floats; `fill`: this process reads the checkpoint into it.
    func allocate(count: Int) throws -> (buffer: UnsafeMutableBufferPointer<Float>, fill: Bool)
    /// Called by every sharer once its part is done; returns when the buffer holds the weights.
    func filled() throws
}

/// The weights, allocated once from the architecture's size table (STYLE rule 4). Views are
/// pointers into the buffer, valid as long as the store lives (the model owns it).
public final class ParameterStore: @unchecked Sendable {
    public let specs: [ParameterSpec]
    public let offsets: [String: Int]
    public let count: Int
    public let buffer: UnsafeMutableBufferPointer<Float>
    /// Whether loading reads the checkpoint into the buffer (false: a skeleton, or a sharer
    /// that another process fills).
    public let fills: Bool
    let shared: SharedWeightStorage?
    /// Bytes mapped by this store itself (0 for a shared buffer).
    private let mappedBytes: Int

    public init(specs: [ParameterSpec], placement: WeightPlacement = .own) throws {
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
        switch placement {
        case .own, .skeleton:
            // Anonymous pages are zero and cost nothing until written: a skeleton never is.
            let bytes = max(total, 1) * MemoryLayout<Float>.stride
            guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
                throw CheckpointError.cannotOpen(path: "(memory)", reason: "cannot reserve \(bytes) bytes for the weights (errno \(errno))")
            }
            buffer = UnsafeMutableBufferPointer(start: p.bindMemory(to: Float.self, capacity: max(total, 1)), count: max(total, 1))
            mappedBytes = bytes
            if case .own = placement { fills = true } else { fills = false }
            shared = nil
        case let .shared(storage):
            let (b, fill) = try storage.allocate(count: max(total, 1))
            buffer = b
            fills = fill
            shared = storage
            mappedBytes = 0
        }
    }

    deinit { if mappedBytes > 0 { munmap(buffer.baseAddress!, mappedBytes) } }

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
    /// `addOne`: Gemma's RMSNorm scales by (1 + w); HF stores w, llama.cpp's GGUF already 1 + w.
    public enum Transform { case none, transpose, unpermuteRotaryHalves(heads: Int), addOne }
    public var stored: String
    public var transform: Transform
    public init(_ stored: String, _ transform: Transform = .none) { self.stored = stored; self.transform = transform }
}

extension ParameterStore {
    /// Fills every parameter from `source` through `keyMap` (canonical name → stored name and
    /// transform). Lists every missing or unexpected tensor at once (STYLE rule 6), then checks
    /// shapes, then reads each tensor straight into its view (no second full-size copy).
    /// A store that does not fill (`fills` false) checks the names and shapes only; a shared
    /// store then waits until its filler is done.
    public func load(from source: TensorSource, keyMap: [String: ParameterSource], ignorable: (String) -> Bool) throws {
        try checkAndRead(from: source, keyMap: keyMap, ignorable: ignorable)
        try shared?.filled()
    }

    private func checkAndRead(from source: TensorSource, keyMap: [String: ParameterSource], ignorable: (String) -> Bool) throws {
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
        }
        guard fills else { return }
        for spec in specs {
            let src = keyMap[spec.name]!
            let dst = view(spec.name)
            switch src.transform {
            case .none:
                try source.read(src.stored, into: dst)
            case .addOne:
                try source.read(src.stored, into: dst)
                for i in dst.indices { dst[i] += 1 }    // float32, as HF's `1.0 + weight.float()`
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
