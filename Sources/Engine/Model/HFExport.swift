// A loaded (and possibly tuned) model as an HF checkpoint stores it: config.json and the tensors
// under their HF names, with the load-time transforms undone (`cnl ... --save-model`).
import Foundation

extension TransformerModel {
    /// Every parameter as HF stores it: the same names as `parameters.specs`, GPT-2's Conv1D
    /// weights transposed back to [in, out], Gemma 3's norms as w (the loaded weights hold 1 + w).
    public func hfTensors() -> [(name: String, shape: [Int], values: [Float])] {
        precondition(slice.isFull, "internal: hfTensors needs the whole model, this is stage \(slice.stage)")
        return parameters.specs.map { spec in
            let v = Array(parameters.view(spec.name))
            switch modelType {
            case "gpt2" where spec.name.hasSuffix("c_attn.weight") || spec.name.hasSuffix("c_proj.weight") || spec.name.hasSuffix("c_fc.weight"):
                let (rows, cols) = (spec.shape[0], spec.shape[1])
                var t = [Float](repeating: 0, count: v.count)
                for r in 0..<rows { for c in 0..<cols { t[c * rows + r] = v[r * cols + c] } }
                return (spec.name, [cols, rows], t)
            case "gemma3_text" where spec.name == "model.norm.weight" || Gemma3.blockNorms.contains(where: { spec.name.hasSuffix("." + $0 + ".weight") }):
                return (spec.name, spec.shape, v.map { $0 - 1 })
            default:
                return (spec.name, spec.shape, v)
            }
        }
    }
}

extension ModelRegistry {
    /// config.json for an HF copy of the checkpoint at `path`: an HF directory's own, or one made
    /// from a llama GGUF's metadata (LlamaConfig, as transformers reads it).
    public static func hfConfigJSON(path: String) throws -> Data {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            return try HFDirectory(path: path).configData
        }
        let gguf = try GGUFReader(path: path)
        let architecture = try gguf.string("general.architecture")
        guard architecture == "llama" else {
            throw ModelError.badConfig(path: path, key: "general.architecture",
                                       detail: "--save-model writes HF directories of llama GGUF files and of HF directories; '\(architecture)' GGUF is not supported (convert it to an HF directory first)")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        var object = (try JSONSerialization.jsonObject(with: try enc.encode(try LlamaConfig(gguf: gguf))) as? [String: Any]) ?? [:]
        object["model_type"] = "llama"
        object["architectures"] = ["LlamaForCausalLM"]
        object["torch_dtype"] = "float32"
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }
}
