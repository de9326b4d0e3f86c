// Pre-tokenizers: split normalized text into the words the model tokenizes one by one (HF's
// `PreTokenizedString::split`, where empty pieces are dropped after every stage).
import Foundation

/// One piece of pre-tokenized text. `atStart` is HF's `offsets_original().0 == 0`: the piece
/// begins at the first character of the input (Metaspace's `prepend_scheme: "first"` reads it).
struct PreToken {
    var text: String
    var atStart: Bool
}

protocol PreTokenizer: Sendable {
    func preTokenize(_ pieces: [PreToken]) -> [PreToken]
}

// MARK: - Factory

enum PreTokenizerFactory {
    static let supported = ["ByteLevel", "Split", "Digits", "Metaspace", "WhitespaceSplit", "Sequence"]

    static func make(_ json: JSONNode) throws -> PreTokenizer {
        let type = try json.type()
        switch type {
        case "ByteLevel":
            return try ByteLevelPreTokenizer(addPrefixSpace: json.bool("add_prefix_space", default: true),
                                             useRegex: json.bool("use_regex", default: true))
        case "Split": return try SplitPreTokenizer(json)
        case "Digits": return DigitsPreTokenizer(individualDigits: try json.bool("individual_digits", default: false))
        case "Metaspace": return try MetaspacePreTokenizer(json)
        case "WhitespaceSplit": return WhitespaceSplitPreTokenizer()
        case "Sequence": return PreTokenizerSequence(stages: try json.array("pretokenizers").map(make))
        default: throw json.unsupportedType(type, supported)
        }
    }
}

// MARK: - Splitting by matches

/// HF `SplitDelimiterBehavior`.
enum SplitBehavior: String, CaseIterable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
}

/// Cuts `piece` into the pieces HF's `NormalizedString::split` makes from `matches` (sorted,
/// non-overlapping scalar ranges of `text`), keeping `atStart` only on a piece that starts at 0.
func split(_ piece: PreToken, _ text: ScannedText, matches: [Range<Int>], behavior: SplitBehavior, invert: Bool = false) -> [PreToken] {
    // Every scalar either in a match or in a gap, in order.
    var parts: [(range: Range<Int>, isMatch: Bool)] = []
    parts.reserveCapacity(matches.count * 2 + 1)
    var prev = 0
    for m in matches {
        if prev < m.lowerBound { parts.append((prev..<m.lowerBound, invert)) }
        parts.append((m, !invert))
        prev = m.upperBound
    }
    if prev < text.count { parts.append((prev..<text.count, invert)) }

    var merged: [Range<Int>] = []
    merged.reserveCapacity(parts.count)
    switch behavior {
    case .removed:
        merged = parts.filter { !$0.isMatch }.map(\.range)
    case .isolated:
        merged = parts.map(\.range)
    case .mergedWithPrevious:
        var previousMatch = false
        for p in parts {
            if p.isMatch && !previousMatch, let last = merged.last {
                merged[merged.count - 1] = last.lowerBound..<p.range.upperBound
            } else {
                merged.append(p.range)
            }
            previousMatch = p.isMatch
        }
    case .mergedWithNext:
        var previousMatch = false
        for p in parts.reversed() {
            if p.isMatch && !previousMatch, let last = merged.last {
                merged[merged.count - 1] = p.range.lowerBound..<last.upperBound
            } else {
                merged.append(p.range)
            }
            previousMatch = p.isMatch
        }
        merged.reverse()
    case .contiguous:
        var previousMatch = false
        for p in parts {
            if p.isMatch == previousMatch, let last = merged.last {
                merged[merged.count - 1] = last.lowerBound..<p.range.upperBound
            } else {
                merged.append(p.range)
            }
            previousMatch = p.isMatch
        }
    }
    if merged.count == 1, merged[0] == 0..<text.count { return [piece] }
    let utf8 = piece.text.utf8
    return merged.compactMap { r in
        guard !r.isEmpty else { return nil }
        let a = utf8.index(utf8.startIndex, offsetBy: text.utf8Offsets[r.lowerBound])
        let b = utf8.index(utf8.startIndex, offsetBy: text.utf8Offsets[r.upperBound])
        return PreToken(text: String(piece.text[a..<b]), atStart: piece.atStart && r.lowerBound == 0)
    }
}

/// Each scalar satisfying `pred` is its own match (HF's `Fn(char) -> bool` pattern).
func scalarMatches(_ text: ScannedText, _ pred: (Unicode.Scalar) -> Bool) -> [Range<Int>] {
    var out: [Range<Int>] = []
    for (i, s) in text.scalars.enumerated() where pred(s) { out.append(i..<(i + 1)) }
    return out
}

// MARK: - Stages

/// HF `ByteLevel`: optional prefix space, optional GPT-2 regex split, then every UTF-8 byte is
/// spelled with GPT-2's printable byte alphabet.
struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool
    private let scanner = GPT2Scanner()

    init(addPrefixSpace: Bool, useRegex: Bool) {
        self.addPrefixSpace = addPrefixSpace
        self.useRegex = useRegex
    }

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        out.reserveCapacity(pieces.count * 4)
        for var piece in pieces {
            if addPrefixSpace && piece.text.utf8.first != 0x20 { piece.text = " " + piece.text }
            if useRegex {
                let scanned = ScannedText(piece.text)
                for p in split(piece, scanned, matches: scanner.matches(in: scanned), behavior: .isolated) {
                    out.append(PreToken(text: ByteLevelAlphabet.encode(p.text), atStart: p.atStart))
                }
            } else if !piece.text.isEmpty {
                out.append(PreToken(text: ByteLevelAlphabet.encode(piece.text), atStart: piece.atStart))
            }
        }
        return out
    }
}

/// HF `Split` with a `{"String": …}` or `{"Regex": …}` pattern. GPT-2's and Llama-3's regexes use
/// the hand-written scanners; others go through ICU.
struct SplitPreTokenizer: PreTokenizer {
    let scanner: RegexScanner?
    let literal: String?
    let behavior: SplitBehavior
    let invert: Bool

    /// A split on a literal string (Gemma's `Split(" ", MergedWithPrevious)`).
    init(literal: String, behavior: SplitBehavior, invert: Bool = false) {
        self.literal = literal; self.scanner = nil; self.behavior = behavior; self.invert = invert
    }

    init(_ json: JSONNode) throws {
        let b = try json.string("behavior")
        guard let behavior = SplitBehavior(rawValue: b) else {
            throw json.unsupportedOption("behavior", b, "expected one of \(SplitBehavior.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self.behavior = behavior
        invert = try json.bool("invert", default: false)
        let pattern = try json.required("pattern")
        if let s = try pattern.optionalString("String") {
            literal = s
            scanner = nil
        } else if let r = try pattern.optionalString("Regex") {
            literal = nil
            switch r {
            case GPT2Scanner.pattern: scanner = GPT2Scanner()
            case Llama3Scanner.pattern: scanner = Llama3Scanner()
            case Llama3Scanner.qwen2Pattern: scanner = Llama3Scanner(maxDigits: 1)
            default: scanner = try ICURegexScanner(pattern: r, path: json.path, key: pattern.key + ".Regex")
            }
        } else {
            throw pattern.malformed("expected {\"String\": …} or {\"Regex\": …}")
        }
    }

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for piece in pieces {
            let scanned = ScannedText(piece.text)
            let matches: [Range<Int>]
            if let scanner {
                matches = scanner.matches(in: scanned)
            } else {
                matches = literalMatches(scanned, literal ?? "")
            }
            out.append(contentsOf: split(piece, scanned, matches: matches, behavior: behavior, invert: invert))
        }
        return out
    }

    private func literalMatches(_ t: ScannedText, _ lit: String) -> [Range<Int>] {
        let p = Array(lit.unicodeScalars)
        guard !p.isEmpty, p.count <= t.count else { return [] }
        var out: [Range<Int>] = []
        var i = 0
        while i + p.count <= t.count {
            if t.scalars[i..<(i + p.count)].elementsEqual(p) {
                out.append(i..<(i + p.count))
                i += p.count
            } else {
                i += 1
            }
        }
        return out
    }
}

/// HF `Digits`: every numeric scalar (Rust `char::is_numeric`) isolated, or runs of them kept
/// together (`individual_digits: false`).
struct DigitsPreTokenizer: PreTokenizer {
    let individualDigits: Bool

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for piece in pieces {
            let scanned = ScannedText(piece.text)
            let matches = scalarMatches(scanned) { UnicodeClasses.isNumeric($0) }
            if matches.isEmpty { if !piece.text.isEmpty { out.append(piece) }; continue }
            out.append(contentsOf: split(piece, scanned, matches: matches, behavior: individualDigits ? .isolated : .contiguous))
        }
        return out
    }
}

/// HF `Metaspace`: spaces become the replacement ("▁"), which is prepended per `prepend_scheme`
/// (`first`: only to the piece that starts the input), then optionally split before each "▁".
struct MetaspacePreTokenizer: PreTokenizer {
    enum Prepend: String { case always, first, never }
    let replacement: String
    let prepend: Prepend
    let splitOnReplacement: Bool

    init(replacement: String, prepend: Prepend, splitOnReplacement: Bool) {
        self.replacement = replacement
        self.prepend = prepend
        self.splitOnReplacement = splitOnReplacement
    }

    init(_ json: JSONNode) throws {
        replacement = try json.string("replacement")
        guard replacement.unicodeScalars.count == 1 else {
            throw json.unsupportedOption("replacement", replacement, "the replacement must be one character")
        }
        if let scheme = try json.optionalString("prepend_scheme") {
            guard let p = Prepend(rawValue: scheme) else { throw json.unsupportedOption("prepend_scheme", scheme, "expected always, first or never") }
            prepend = p
        } else {
            // Older files: `add_prefix_space` (true → always).
            prepend = try json.bool("add_prefix_space", default: true) ? .always : .never
        }
        splitOnReplacement = try json.bool("split", default: true)
    }

    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        // Both initializers require one character; an empty one would have nothing to do.
        guard let r = replacement.unicodeScalars.first else { return pieces }
        var out: [PreToken] = []
        for piece in pieces {
            var text = replaceLiteral(piece.text, " ", replacement)
            switch prepend {
            case .always: if !text.utf8.starts(with: replacement.utf8) { text = replacement + text }
            case .first: if !text.utf8.starts(with: replacement.utf8) && piece.atStart { text = replacement + text }
            case .never: break
            }
            let p = PreToken(text: text, atStart: piece.atStart)
            if splitOnReplacement {
                let scanned = ScannedText(text)
                out.append(contentsOf: split(p, scanned, matches: scalarMatches(scanned) { $0 == r }, behavior: .mergedWithNext))
            } else if !text.isEmpty {
                out.append(p)
            }
        }
        return out
    }
}

/// HF `WhitespaceSplit`: splits on Unicode whitespace, dropping it.
struct WhitespaceSplitPreTokenizer: PreTokenizer {
    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        var out: [PreToken] = []
        for piece in pieces {
            let scanned = ScannedText(piece.text)
            out.append(contentsOf: split(piece, scanned, matches: scalarMatches(scanned) { $0.properties.isWhitespace }, behavior: .removed))
        }
        return out
    }
}

struct PreTokenizerSequence: PreTokenizer {
    let stages: [PreTokenizer]
    func preTokenize(_ pieces: [PreToken]) -> [PreToken] { stages.reduce(pieces) { $1.preTokenize($0) } }
}
