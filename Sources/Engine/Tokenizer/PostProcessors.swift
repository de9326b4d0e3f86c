// Post-processors: add the model's special tokens around one encoded sequence (single-sequence
// templates only; pairs are not used by cnl).
import Foundation

protocol PostProcessor: Sendable {
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int]
    /// Ids placed before/after the sequence (for describing the tokenizer).
    var prefix: [Int] { get }
    var suffix: [Int] { get }
}

// MARK: - Factory

enum PostProcessorFactory {
    static let supported = ["TemplateProcessing", "ByteLevel", "RobertaProcessing", "BertProcessing", "Sequence"]

    static func make(_ json: JSONNode) throws -> PostProcessor {
        let type = try json.type()
        switch type {
        case "TemplateProcessing": return try TemplateProcessor(json)
        case "ByteLevel": return TemplateProcessor(prefix: [], suffix: []) // offsets only; ids unchanged
        case "RobertaProcessing", "BertProcessing":
            return TemplateProcessor(prefix: [try tokenPairID(json, "cls")], suffix: [try tokenPairID(json, "sep")])
        case "Sequence":
            let stages = try json.array("processors").map(make)
            return TemplateProcessor(prefix: stages.reversed().flatMap(\.prefix), suffix: stages.flatMap(\.suffix))
        default: throw json.unsupportedType(type, supported)
        }
    }

    /// `"cls": ["<s>", 0]`.
    private static func tokenPairID(_ json: JSONNode, _ name: String) throws -> Int {
        let pair = try json.array(name)
        guard pair.count == 2, let id = pair[1].intValue else { throw try json.required(name).malformed("expected [token, id]") }
        return id
    }
}

// MARK: - Stages

/// HF `TemplateProcessing`, single template: special tokens before and after `$A`.
struct TemplateProcessor: PostProcessor {
    let prefix: [Int]
    let suffix: [Int]

    init(prefix: [Int], suffix: [Int]) {
        self.prefix = prefix
        self.suffix = suffix
    }

    init(_ json: JSONNode) throws {
        var specials: [String: [Int]] = [:]
        if let st = json.child("special_tokens") {
            for (name, entry) in try st.members() {
                let ids = try entry.array("ids").map { n -> Int in
                    guard let i = n.intValue else { throw n.malformed("expected an integer id") }
                    return i
                }
                specials[name] = ids
            }
        }
        var before: [Int] = [], after: [Int] = []
        var seenSequence = false
        for item in try json.array("single") {
            if let special = item.child("SpecialToken") {
                let name = try special.string("id")
                guard let ids = specials[name] else {
                    throw TokenizerError.unknownToken(path: json.path, key: "\(json.key).special_tokens", token: name)
                }
                if seenSequence { after += ids } else { before += ids }
            } else if let seq = item.child("Sequence") {
                let id = try seq.string("id")
                guard id == "A", !seenSequence else {
                    throw json.unsupportedOption("single", id, "a single-sequence template holds $A once")
                }
                seenSequence = true
            } else {
                throw item.malformed("expected {\"SpecialToken\": …} or {\"Sequence\": …}")
            }
        }
        prefix = before
        suffix = after
    }

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        guard addSpecialTokens, !(prefix.isEmpty && suffix.isEmpty) else { return ids }
        return prefix + ids + suffix
    }
}
