// The `cnl` command: subcommands for inspecting models, tokenizing, generating and benchmarking.
import ArgumentParser
import Coordinator
import Foundation

@main
struct CNL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cnl",
        abstract: "Commonality Neuron Localization: find the FFN neurons that carry a capability.",
        discussion: """
        Models: a .gguf file (llama or gemma3 architecture) or a Hugging Face directory (config.json + \
        *.safetensors) of model_type llama, gpt2, gptj or gemma3_text.
        """,
        subcommands: [Locate.self, Evaluate.self, Erase.self, Enhance.self, Converge.self, Rescore.self, Inspect.self, Tokenize.self, Generate.self, Bench.self, BLAS.self]
    )

    static func main() {
        BLASKernelRestart.restartIfOpenBLASFellBack()
        main(nil)
    }
}

/// Options every model-using command shares.
struct ModelOptions: ParsableArguments {
    @Argument(help: "Model: a .gguf file or an HF directory with config.json and *.safetensors.")
    var model: String

    @Option(help: "BLAS threads (default: OPENBLAS_NUM_THREADS, else all cores).")
    var threads: Int?

    func validate() throws {
        try OptionChecks.threads(threads)
        guard FileManager.default.fileExists(atPath: model) else {
            throw ValidationError("model '\(model)' does not exist; pass a .gguf file or an HF model directory")
        }
    }

    func applyThreads() { if let threads { BLASThreads.set(threads) } }
}

/// Prints a user-facing error on one line and exits non-zero (no stack traces for input errors).
func runReportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ValidationError { throw e } catch let e as ExitCode { throw e } catch {
        FileHandle.standardError.write(Data("cnl: error: \(error.localizedDescription)\n".utf8))
        throw ExitCode(1)
    }
}

extension Encodable {
    func jsonString() throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(self), as: UTF8.self)
    }
}
