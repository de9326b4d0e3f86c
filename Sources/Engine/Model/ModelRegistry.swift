// Maps a checkpoint's declared architecture (HF model_type, GGUF general.architecture) to its file.
import Foundation

/// A model ready to run: the architecture with its weights, plus where it came from.
public struct LoadedModel {
    public let model: TransformerModel
    public let path: String
    /// "GGUF v3" or "safetensors".
    public let format: String
    /// How the checkpoint stores its tensors: storage type → element count (e.g. Q4_1 → 1.2e8).
    public let storage: [String: Int]
    /// The model's tokenizer: GGUF metadata, or tokenizer.json beside an HF checkpoint.
    public let tokenizer: Tokenizer?

    public func requireTokenizer() throws -> Tokenizer {
        guard let tokenizer else {
            throw ModelError.noTokenizer(path: path)
        }
        return tokenizer
    }
}

public enum ModelRegistry {
    /// HF `model_type` → loader for an HF directory (one entry per architecture file).
    static let hfArchitectures: [String: (HFDirectory, StageRequest?, WeightPlacement) throws -> TransformerModel] = [
        "llama": { try Llama.load(hf: $0, stage: $1, placement: $2) },
        "gpt2": { try GPT2.load(hf: $0, stage: $1, placement: $2) },
        "gptj": { try GPTJ.load(hf: $0, stage: $1, placement: $2) },
        "gemma3_text": { try Gemma3.load(hf: $0, stage: $1, placement: $2) },
    ]

    /// GGUF `general.architecture` → loader.
    static let ggufArchitectures: [String: (GGUFReader, StageRequest?, WeightPlacement) throws -> TransformerModel] = [
        "llama": { try Llama.load(gguf: $0, stage: $1, placement: $2) },
        "gemma3": { try Gemma3.load(gguf: $0, stage: $1, placement: $2) },
    ]

    public static var supportedModelTypes: [String] { hfArchitectures.keys.sorted() }

    /// Loads a `.gguf` file or an HF directory (config.json + safetensors); with `stage`, only
    /// that pipeline stage's tensors are read (the others' bytes are never touched);
    /// `placement`: the weights in this process, in a node-shared buffer, or not read at all.
    public static func load(path: String, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> LoadedModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if isDir.boolValue {
            let dir = try HFDirectory(path: path)
            return try load(hf: dir, stage: stage, placement: placement)
        }
        let gguf = try GGUFReader(path: path)
        return try load(gguf: gguf, stage: stage, placement: placement)
    }

    public static func load(hf dir: HFDirectory, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> LoadedModel {
        struct Head: Decodable { let model_type: String? }
        let configPath = dir.path + "/config.json"
        let head: Head
        do { head = try JSONDecoder().decode(Head.self, from: dir.configData) } catch {
            throw ModelError.badConfig(path: configPath, key: "(file)", detail: "is not a JSON object: \(error.localizedDescription)")
        }
        guard let type = head.model_type else {
            throw ModelError.badConfig(path: configPath, key: "model_type", detail: "is missing")
        }
        if type == "gemma3" {
            // Gemma3ForConditionalGeneration: a vision tower and language_model.* names.
            throw ModelError.unsupported(path: configPath, key: "model_type", value: type,
                                         supported: "gemma3_text (save the text model alone: Gemma3ForCausalLM)")
        }
        guard let make = hfArchitectures[type] else {
            throw CheckpointError.unsupportedArchitecture(path: configPath, name: type, supported: supportedModelTypes)
        }
        return LoadedModel(model: try make(dir, stage, placement), path: dir.path, format: "safetensors", storage: storageSummary(dir),
                           tokenizer: try hfTokenizer(dir.path))
    }

    public static func load(gguf: GGUFReader, stage: StageRequest? = nil, placement: WeightPlacement = .own) throws -> LoadedModel {
        let arch = try gguf.string("general.architecture")
        guard let make = ggufArchitectures[arch] else {
            throw CheckpointError.unsupportedArchitecture(path: gguf.path, name: arch, supported: ggufArchitectures.keys.sorted())
        }
        let tokenizer = gguf.metadata["tokenizer.ggml.model"] == nil ? nil : try Tokenizer.load(gguf: gguf)
        return LoadedModel(model: try make(gguf, stage, placement), path: gguf.path, format: "GGUF v\(gguf.version)", storage: storageSummary(gguf),
                           tokenizer: tokenizer)
    }

    /// Only the tokenizer of a model (no weights are read).
    public static func loadTokenizer(path: String) throws -> Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError.cannotOpen(path: path, reason: "no such file or directory")
        }
        if isDir.boolValue {
            guard let t = try hfTokenizer(path) else {
                throw CheckpointError.cannotOpen(path: path + "/tokenizer.json", reason: "no tokenizer.json in the model directory")
            }
            return t
        }
        return try Tokenizer.load(gguf: GGUFReader(path: path))
    }

    static func hfTokenizer(_ dir: String) throws -> Tokenizer? {
        let p = dir + "/tokenizer.json"
        return FileManager.default.fileExists(atPath: p) ? try Tokenizer.load(tokenizerJSON: p) : nil
    }

    static func storageSummary(_ s: TensorSource) -> [String: Int] {
        var out: [String: Int] = [:]
        for e in s.tensors.values { out[e.storage, default: 0] += e.elementCount }
        return out
    }
}

extension HFDirectory {
    /// config.json decoded as one architecture's config; a file that does not decode is one error
    /// naming it and the architecture (`kind`, e.g. "a Llama config").
    func decodeConfig<C: Decodable>(_ type: C.Type, as kind: String) throws -> C {
        do { return try JSONDecoder().decode(type, from: configData) } catch {
            throw ModelError.badConfig(path: path + "/config.json", key: "(file)", detail: "does not decode as \(kind): \(error)")
        }
    }
}
