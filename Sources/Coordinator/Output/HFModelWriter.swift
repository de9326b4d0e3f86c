// `--save-model DIR`: a tuned model as an HF directory (config.json + model.safetensors, float32)
// that transformers' AutoModelForCausalLM.from_pretrained loads.
import Engine
import Foundation
import Shard

public enum HFModelWriter {
    /// Writes `model` as it is now; `sourcePath` is the checkpoint it was loaded from (its
    /// config.json, or one made from its GGUF metadata). Files appear whole or not at all.
    public static func write(_ model: TransformerModel, sourcePath: String, to dir: String, metadata: [String: String] = [:]) throws {
        let config = try ModelRegistry.hfConfigJSON(path: sourcePath)
        try AtomicFile.prepareDirectory(dir)
        let tensors = model.hfTensors().map { TensorPayload.float32($0.name, $0.values, shape: $0.shape) }
        try SafetensorsWriter.write(tensors, metadata: metadata.merging(["format": "pt"]) { a, _ in a },
                                    to: (dir as NSString).appendingPathComponent("model.safetensors"))
        try AtomicFile.write(config, to: (dir as NSString).appendingPathComponent("config.json"))
    }
}
