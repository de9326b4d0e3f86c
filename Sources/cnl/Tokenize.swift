// `cnl tokenize MODEL --text …`: the model's own tokenizer, ids and pieces.
import ArgumentParser
import Coordinator
import Foundation

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tokenize text with the model's tokenizer (as HF tokenizers would).")

    @OptionGroup var options: ModelOptions

    @Option(help: "Text to tokenize.")
    var text: String?

    @Option(help: "Tokenize the lines of this file instead (JSONL with --json-field, else plain text), joined by spaces.")
    var file: String?

    @Option(help: "With --file: the JSON field of each line to tokenize.")
    var jsonField: String?

    @Option(help: "Keep at most this many tokens.")
    var maxTokens: Int?

    @Flag(help: "Do not add the special tokens of the tokenizer's post-processor (e.g. BOS).")
    var noSpecialTokens = false

    @Flag(help: "Print only comma-separated ids.")
    var idsOnly = false

    func validate() throws {
        guard (text == nil) != (file == nil) else { throw ValidationError("give exactly one of --text and --file") }
        if jsonField != nil && file == nil { throw ValidationError("--json-field needs --file") }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
    }

    func run() throws {
        try runReportingErrors {
            let tokenizer = try ModelRegistry.loadTokenizer(path: options.model)
            let input: String
            if let text {
                input = text
            } else if let jsonField {
                input = try JSONLines.strings(path: file!, field: jsonField, limitCharacters: (maxTokens ?? 1 << 40) * 16).joined(separator: " ")
            } else {
                guard let s = try? String(contentsOfFile: file!, encoding: .utf8) else {
                    throw CLIError.unreadable(path: file!)
                }
                input = s
            }
            var ids = tokenizer.encode(input, addSpecialTokens: !noSpecialTokens)
            if let maxTokens, ids.count > maxTokens { ids = Array(ids.prefix(maxTokens)) }
            if idsOnly {
                print(ids.map(String.init).joined(separator: ","))
            } else {
                print("\(ids.count) tokens (\(tokenizer.kind))")
                for id in ids { print("\(id)\t\(tokenizer.token(id).map { String(reflecting: $0) } ?? "?")") }
            }
        }
    }
}

enum CLIError: Error, LocalizedError {
    case unreadable(path: String)
    var errorDescription: String? {
        switch self {
        case let .unreadable(path): return "\(path): cannot read the file as UTF-8 text"
        }
    }
}
