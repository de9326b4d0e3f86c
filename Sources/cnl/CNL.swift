// The `cnl` command: subcommands for inspecting models, tokenizing, generating and locating.
import ArgumentParser
import Coordinator
import Foundation

@main
struct CNL: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cnl",
        abstract: "Commonality Neuron Localization: find the FFN neurons that carry a capability.",
        subcommands: []
    )
}
