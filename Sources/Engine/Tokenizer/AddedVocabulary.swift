// Added tokens (HF `AddedVocabulary`): tokens matched whole in the text before the model sees it,
// e.g. "<|im_start|>". Tokens with `normalized: false` are found in the raw text, the others in
// each normalized piece; matching is leftmost-longest, with `single_word`, `lstrip` and `rstrip`.
import Foundation

public struct AddedToken: Sendable, Equatable {
    public var id: Int
    public var content: String
    public var special: Bool
    public var singleWord: Bool = false
    public var lstrip: Bool = false
    public var rstrip: Bool = false
    public var normalized: Bool = false
}

/// A piece of input: text to normalize and tokenize, or an added token already decided.
enum Segment {
    case text(String, atStart: Bool)
    case token(Int)
}

struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    let byID: [Int: AddedToken]
    let byContent: [TokenKey: AddedToken]
    private let raw: TokenMatcher
    private let normalized: TokenMatcher

    init(_ tokens: [AddedToken]) {
        self.tokens = tokens
        var byID: [Int: AddedToken] = [:], byContent: [TokenKey: AddedToken] = [:]
        for t in tokens { byID[t.id] = t; byContent[TokenKey(t.content)] = t }
        self.byID = byID
        self.byContent = byContent
        raw = TokenMatcher(tokens.filter { !$0.normalized })
        normalized = TokenMatcher(tokens.filter { $0.normalized })
    }

    var isEmpty: Bool { tokens.isEmpty }

    func isSpecial(_ id: Int) -> Bool { byID[id]?.special ?? false }

    /// Splits raw text on the non-normalized added tokens.
    func splitRaw(_ text: String) -> [Segment] { raw.split(text, atStart: true) }

    /// Splits one normalized piece on the normalized added tokens.
    func splitNormalized(_ text: String, atStart: Bool) -> [Segment] { normalized.split(text, atStart: atStart) }
}

/// Leftmost-longest literal matching over UTF-8 bytes (what HF's Aho-Corasick automaton with
/// `MatchKind::LeftmostLongest` returns), with candidates bucketed by first byte.
struct TokenMatcher: Sendable {
    private let buckets: [[(bytes: [UInt8], token: AddedToken)]]
    let isEmpty: Bool

    init(_ tokens: [AddedToken]) {
        var b = [[(bytes: [UInt8], token: AddedToken)]](repeating: [], count: 256)
        for t in tokens where !t.content.isEmpty {
            let bytes = Array(t.content.utf8)
            b[Int(bytes[0])].append((bytes, t))
        }
        // Longest first, so the first hit at a position is the longest.
        buckets = b.map { $0.sorted { $0.bytes.count > $1.bytes.count } }
        isEmpty = tokens.isEmpty
    }

    func split(_ text: String, atStart: Bool) -> [Segment] {
        if isEmpty || text.isEmpty { return text.isEmpty ? [] : [.text(text, atStart: atStart)] }
        let t = Array(text.utf8)
        let n = t.count
        var segments: [Segment] = []
        var startOffset = 0 // end of the previous split
        var i = 0
        while i < n {
            var found: (Int, AddedToken)? = nil
            for cand in buckets[Int(t[i])] where i + cand.bytes.count <= n {
                var k = 1
                let c = cand.bytes
                while k < c.count, t[i + k] == c[k] { k += 1 }
                if k == c.count { found = (c.count, cand.token); break }
            }
            guard let (len, token) = found else { i += 1; continue }
            var start = i
            var stop = i + len
            if token.singleWord {
                let before = start == 0 || !Self.endsWithWord(t[0..<start])
                let after = stop == n || !Self.startsWithWord(t[stop..<n])
                if !(before && after) { i += len; continue } // the automaton resumes after a discarded match
            }
            if token.lstrip {
                start = max(Self.whitespaceRunStart(t, before: start), startOffset)
            }
            if token.rstrip {
                stop = Self.whitespaceRunEnd(t, from: stop)
            }
            if startOffset < start {
                segments.append(.text(String(decoding: t[startOffset..<start], as: UTF8.self), atStart: atStart && startOffset == 0))
            }
            segments.append(.token(token.id))
            startOffset = stop
            i = max(stop, i + len)
        }
        if startOffset < n {
            segments.append(.text(String(decoding: t[startOffset..<n], as: UTF8.self), atStart: atStart && startOffset == 0))
        }
        return segments
    }

    // MARK: Word and whitespace tests on UTF-8 (Rust regex `\w`, `\s`)

    private static func lastScalar(_ b: ArraySlice<UInt8>) -> Unicode.Scalar? {
        String(decoding: b.suffix(4), as: UTF8.self).unicodeScalars.last
    }

    private static func endsWithWord(_ b: ArraySlice<UInt8>) -> Bool {
        guard let s = lastScalar(b) else { return false }
        return UnicodeClasses.isWordCharacter(s)
    }

    private static func startsWithWord(_ b: ArraySlice<UInt8>) -> Bool {
        guard let s = String(decoding: b.prefix(4), as: UTF8.self).unicodeScalars.first else { return false }
        return UnicodeClasses.isWordCharacter(s)
    }

    /// Start of the whitespace run that ends at `end`.
    private static func whitespaceRunStart(_ t: [UInt8], before end: Int) -> Int {
        var scalars = Array(String(decoding: t[0..<end], as: UTF8.self).unicodeScalars)
        var start = end
        while let s = scalars.last, s.properties.isWhitespace {
            start -= UTF8.width(s)
            scalars.removeLast()
        }
        return start
    }

    /// End of the whitespace run that starts at `start`.
    private static func whitespaceRunEnd(_ t: [UInt8], from start: Int) -> Int {
        var end = start
        for s in String(decoding: t[start...], as: UTF8.self).unicodeScalars {
            guard s.properties.isWhitespace else { break }
            end += UTF8.width(s)
        }
        return end
    }
}
