// A tuned model kept small: the changed neurons' rows of an enhance arm, their indices and the
// fingerprint of the checkpoint they apply to (`cnl enhance` writes it, `cnl evaluate --delta`
// applies it, and so can numpy: the metadata names each slice's HF tensor and layout).
import Engine
import Foundation

/// The slice values of some neurons in a delta file, in `SliceParameters` order: per neuron its
/// W_in row [D] (and bias), with `upAndDown` also its W_up row (and bias) and W_out column.
public struct NeuronDelta: Sendable {
    public static let format = "cnl-neuron-delta"

    public var slices: NeuronSlices
    public var values: [Float]
    /// SHA-256 of the base checkpoint (the file, or an HF directory's files) and its path.
    public var baseSHA256: String
    public var basePath: String
    public var width: Int
    public var ffnWidth: Int
    public var layers: Int
    /// Free-form description kept in the metadata (arm, epoch, σ, run).
    public var notes: [String: String] = [:]
    /// Which slice parts the values hold, in `SliceParameters` order: in_weight, in_bias,
    /// up_weight, up_bias, out_weight (those the model has and `slices` asks for).
    public var parts: [String]

    public enum Failure: Error, LocalizedError, Equatable {
        case notADelta(path: String, detail: String)
        case otherBase(path: String, deltaBase: String, model: String, modelSHA: String)
        case otherShape(path: String, detail: String)

        public var errorDescription: String? {
            switch self {
            case let .notADelta(path, detail): return "\(path): not a cnl neuron delta: \(detail)"
            case let .otherBase(path, deltaBase, model, modelSHA):
                return "\(path): this delta was made from the checkpoint with sha256 \(deltaBase), but \(model) has sha256 \(modelSHA); apply it to its own base model"
            case let .otherShape(path, detail): return "\(path): \(detail)"
            }
        }
    }

    /// The model's current values of `slices` (after an arm trained them).
    public init(model: TransformerModel, slices: NeuronSlices, baseSHA256: String, basePath: String, notes: [String: String] = [:]) {
        let d = model.dimensions
        self.slices = slices
        values = SliceParameters(model: model, slices: slices).values()
        let block = model.block(0)
        parts = ["in_weight"] + (block.ffnIn.bias != nil ? ["in_bias"] : [])
        if slices.upAndDown {
            parts += (block.ffnUp != nil ? ["up_weight"] : []) + (block.ffnUp?.bias != nil ? ["up_bias"] : []) + ["out_weight"]
        }
        (self.baseSHA256, self.basePath, width, ffnWidth, layers, self.notes) = (baseSHA256, basePath, d.width, d.ffnWidth, d.layers, notes)
    }

    /// The HF tensor each slice lives in, `{layer}` for the layer, and whether the neuron's slice
    /// is a row or a column of it (GPT-2's Conv1D stores its weights transposed).
    static func hfNames(modelType: String) -> [String: String] {
        switch modelType {
        case "gpt2":
            let p = "transformer.h.{layer}.mlp."
            return ["in_weight": p + "c_fc.weight[:, j]", "in_bias": p + "c_fc.bias[j]", "out_weight": p + "c_proj.weight[j, :]"]
        case "gptj":
            let p = "transformer.h.{layer}.mlp."
            return ["in_weight": p + "fc_in.weight[j, :]", "in_bias": p + "fc_in.bias[j]", "out_weight": p + "fc_out.weight[:, j]"]
        default:
            let p = "model.layers.{layer}.mlp."
            return ["in_weight": p + "gate_proj.weight[j, :]", "up_weight": p + "up_proj.weight[j, :]", "out_weight": p + "down_proj.weight[:, j]"]
        }
    }

    /// The file: `neurons` (int64 l·J + j), then per part a [N, D] or [N] float32 tensor, and the
    /// metadata (format, base fingerprint, shapes, the HF name of every part).
    public func write(to path: String, modelType: String) throws {
        let N = slices.neurons.count, D = width
        let layout = partLayout()
        var tensors: [TensorPayload] = [.int64("neurons", slices.neurons.map(Int64.init), shape: [N])]
        var offset = 0
        for (name, perNeuron) in layout {
            let n = N * perNeuron
            tensors.append(.float32(name, Array(values[offset..<offset + n]), shape: perNeuron == 1 ? [N] : [N, D]))
            offset += n
        }
        var meta = notes
        for (k, v) in Self.hfNames(modelType: modelType) where layout.contains(where: { $0.name == k }) { meta["hf_\(k)"] = v }
        meta["format"] = Self.format
        meta["version"] = "1"
        meta["base_sha256"] = baseSHA256
        meta["base_path"] = basePath
        meta["model_type"] = modelType
        meta["layers"] = String(layers)
        meta["ffn_width"] = String(ffnWidth)
        meta["width"] = String(width)
        meta["up_and_down"] = slices.upAndDown ? "true" : "false"
        try SafetensorsWriter.write(tensors, metadata: meta, to: path)
    }

    /// The parts present, in `SliceParameters` order, with their values per neuron.
    func partLayout() -> [(name: String, perNeuron: Int)] {
        parts.map { ($0, $0.hasSuffix("bias") ? 1 : width) }
    }

    /// Reads a delta file; `apply` checks it against a model.
    public static func read(_ path: String) throws -> NeuronDelta {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw Failure.notADelta(path: path, detail: error.localizedDescription) }
        let m = file.metadata
        guard m["format"] == format else { throw Failure.notADelta(path: path, detail: "its metadata has no format '\(format)'") }
        guard let base = m["base_sha256"], let D = m["width"].flatMap(Int.init), let J = m["ffn_width"].flatMap(Int.init),
              let L = m["layers"].flatMap(Int.init) else {
            throw Failure.notADelta(path: path, detail: "base_sha256, width, ffn_width or layers is missing from its metadata")
        }
        let neurons = try file.readIntegers("neurons")
        guard neurons == Array(Set(neurons)).sorted(), neurons.allSatisfy({ $0 >= 0 && $0 < L * J }) else {
            throw Failure.notADelta(path: path, detail: "'neurons' must be distinct ascending indices in 0..<\(L * J)")
        }
        let slices = NeuronSlices(neurons: neurons, upAndDown: m["up_and_down"] == "true")
        var values: [Float] = [], parts: [String] = []
        for name in ["in_weight", "in_bias", "up_weight", "up_bias", "out_weight"] {
            guard let e = file.tensors[name] else { continue }
            parts.append(name)
            let want = name.hasSuffix("bias") ? [neurons.count] : [neurons.count, D]
            guard e.shape == want else { throw Failure.notADelta(path: path, detail: "'\(name)' has shape \(e.shape), expected \(want)") }
            var part = [Float](repeating: 0, count: e.elementCount)
            try part.withUnsafeMutableBufferPointer { try file.read(name, into: $0) }
            values += part
        }
        guard file.tensors["in_weight"] != nil else { throw Failure.notADelta(path: path, detail: "it has no 'in_weight' tensor") }
        var d = NeuronDelta(slices: slices, values: values, parts: parts, baseSHA256: base, basePath: m["base_path"] ?? "", width: D, ffnWidth: J, layers: L)
        d.notes = m.filter { !["format", "version", "base_sha256", "base_path", "width", "ffn_width", "layers", "up_and_down"].contains($0.key) }
        return d
    }

    init(slices: NeuronSlices, values: [Float], parts: [String], baseSHA256: String, basePath: String, width: Int, ffnWidth: Int, layers: Int) {
        (self.slices, self.values, self.parts, self.baseSHA256, self.basePath, self.width, self.ffnWidth, self.layers) =
            (slices, values, parts, baseSHA256, basePath, width, ffnWidth, layers)
    }

    /// Writes the delta's values into `model`, refusing another base checkpoint (by SHA-256) or
    /// another shape. `path` names the delta in errors, `modelPath` the model.
    public func apply(to model: TransformerModel, modelSHA256: String, path: String, modelPath: String) throws {
        guard modelSHA256 == baseSHA256 else {
            throw Failure.otherBase(path: path, deltaBase: baseSHA256, model: modelPath, modelSHA: modelSHA256)
        }
        let d = model.dimensions
        guard d.width == width, d.ffnWidth == ffnWidth, d.layers == layers else {
            throw Failure.otherShape(path: path, detail: "made for \(layers)×\(ffnWidth) neurons of width \(width), the model has \(d.layers)×\(d.ffnWidth) of width \(d.width)")
        }
        let parameters = SliceParameters(model: model, slices: slices)
        guard parameters.count == values.count else {
            throw Failure.otherShape(path: path, detail: "\(values.count) values for the \(parameters.count) slice values of these neurons in this model")
        }
        parameters.assign(values)
    }
}
