// `cnl inspect MODEL`: architecture, sizes, dtype and tokenizer of a checkpoint.
import ArgumentParser
import Coordinator
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, layers, widths, heads, vocabulary, parameter count, dtype and tokenizer.")

    @OptionGroup var options: ModelOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        try runReportingErrors {
            options.applyThreads()
            let (summary, _) = try ModelInspector.inspect(path: options.model)
            print(json ? try summary.jsonString() : summary.text)
        }
    }
}
