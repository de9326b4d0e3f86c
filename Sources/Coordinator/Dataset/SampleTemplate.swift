// Prompt and answer text of a sample from a record: "{field}" templates and verbalizers.
import Foundation

/// A template such as "Question: {question}\nAnswer:" over a record's fields. Besides the
/// record's own fields, `{answer_final}` is the text after the last "####" of `answer` (GSM8K's
/// final answer). `{{` and `}}` are literal braces.
public struct SampleTemplate: Sendable, Equatable {
    enum Piece: Sendable, Equatable { case text(String), field(String) }
    let pieces: [Piece]
    public let source: String

    public init(_ source: String, key: String) throws {
        self.source = source
        var pieces: [Piece] = []
        var text = ""
        var i = source.startIndex
        while i < source.endIndex {
            let c = source[i]
            let next = source.index(after: i)
            if c == "{", next < source.endIndex, source[next] == "{" { text.append("{"); i = source.index(after: next); continue }
            if c == "}", next < source.endIndex, source[next] == "}" { text.append("}"); i = source.index(after: next); continue }
            if c == "{" {
                guard let close = source[next...].firstIndex(of: "}") else {
                    throw DatasetError.badTemplate(key: key, template: source, detail: "a '{' is never closed")
                }
                let name = String(source[next..<close])
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw DatasetError.badTemplate(key: key, template: source, detail: "'{\(name)}' is not a field name")
                }
                if !text.isEmpty { pieces.append(.text(text)); text = "" }
                pieces.append(.field(name))
                i = source.index(after: close)
                continue
            }
            if c == "}" { throw DatasetError.badTemplate(key: key, template: source, detail: "a '}' has no '{'") }
            text.append(c)
            i = next
        }
        if !text.isEmpty { pieces.append(.text(text)) }
        self.pieces = pieces
    }

    public var fields: [String] { pieces.compactMap { if case let .field(f) = $0 { return f }; return nil } }

    /// The text for one record; `verbalizer[field][value]` replaces a field's raw value.
    public func render(_ record: [String: String], verbalizer: [String: [String: String]], path: String, line: Int) throws -> String {
        var out = ""
        for p in pieces {
            switch p {
            case let .text(t): out += t
            case let .field(f):
                guard let raw = Self.value(f, in: record) else { throw DatasetError.missingField(path: path, line: line, field: f) }
                if let words = verbalizer[f] {
                    guard let w = words[raw] else { throw DatasetError.unmappedLabel(path: path, line: line, field: f, value: raw, known: words.keys.sorted()) }
                    out += w
                } else {
                    out += raw
                }
            }
        }
        return out
    }

    static func value(_ field: String, in record: [String: String]) -> String? {
        if let v = record[field] { return v }
        if field == "answer_final", let a = record["answer"] {
            guard let r = a.range(of: "####", options: .backwards) else { return nil }
            return a[r.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }
}

public enum DatasetError: Error, LocalizedError, Equatable {
    case badTemplate(key: String, template: String, detail: String)
    case missingField(path: String, line: Int, field: String)
    case unmappedLabel(path: String, line: Int, field: String, value: String, known: [String])
    case emptyAnswer(path: String, line: Int)
    case emptyPrompt(path: String, line: Int)
    case tooLong(path: String, line: Int, tokens: Int, context: Int)
    case unknownFormat(path: String)
    case empty(path: String)

    public var errorDescription: String? {
        switch self {
        case let .badTemplate(key, template, detail): return "config '\(key)': template \(String(reflecting: template)): \(detail)"
        case let .missingField(path, line, field): return "\(path):\(line): no field '\(field)' for the template; fix the line or the template"
        case let .unmappedLabel(path, line, field, value, known):
            return "\(path):\(line): '\(field)' = \(String(reflecting: value)) has no verbalizer word (known: \(known.joined(separator: ", ")))"
        case let .emptyAnswer(path, line): return "\(path):\(line): the answer is empty (tokenizes to no tokens); Eq. 7 needs at least one answer token"
        case let .emptyPrompt(path, line): return "\(path):\(line): the prompt is empty (tokenizes to no tokens)"
        case let .tooLong(path, line, tokens, context):
            return "\(path):\(line): prompt + answer is \(tokens) tokens, longer than the model's context of \(context); shorten it or set max_answer_tokens"
        case let .unknownFormat(path): return "\(path): unknown data format; use a .jsonl or .csv file"
        case let .empty(path): return "\(path): no samples"
        }
    }
}
