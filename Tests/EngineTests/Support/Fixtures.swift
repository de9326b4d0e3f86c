// Locates the real assets and the Python oracles' outputs that the tests compare against.
import Foundation
import XCTest

/// Paths under the repository's `.assets/` (made by `scripts/fetch-assets.sh` and
/// `scripts/make-fixtures.sh`). A missing file fails the test with the command that makes it:
/// a test that cannot see its reference must not pass.
enum Fixtures {
    static let repoRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    static let assets = repoRoot.appendingPathComponent(".assets")
    static let oracle = assets.appendingPathComponent("oracle")

    static var smolLM2: String { assets.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path }
    static var gsm8k: String { assets.appendingPathComponent("data/gsm8k/test.jsonl").path }

    /// An existing file under `.assets/`, or a test failure that says how to make it.
    static func require(_ relative: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let p = assets.appendingPathComponent(relative).path
        guard FileManager.default.fileExists(atPath: p) else {
            XCTFail("missing \(p): run `make fixtures` (scripts/fetch-assets.sh and scripts/make-fixtures.sh)", file: file, line: line)
            throw FixtureMissing(path: p)
        }
        return p
    }

    struct FixtureMissing: Error { let path: String }
}
