// Hand-written scanners for the two pre-tokenizer regexes that matter (GPT-2's and Llama-3's),
// with the Oniguruma semantics HF tokenizers uses: `\s` is Unicode White_Space, `\p{L}` the
// letter categories (Lu Ll Lt Lm Lo), `\p{N}` the number categories (Nd Nl No), alternation is
// leftmost-first and quantifiers are greedy with backtracking. Other `Split` regexes go through
// NSRegularExpression (ICU), which is close but not promised to be identical.
import Foundation

// MARK: - Character classes

/// The scalar classes both regexes are written in.
struct ScalarClass: OptionSet {
    let rawValue: UInt8
    static let letter = ScalarClass(rawValue: 1)
    static let number = ScalarClass(rawValue: 2)
    static let whitespace = ScalarClass(rawValue: 4)
    /// `\r` or `\n` (also whitespace).
    static let newline = ScalarClass(rawValue: 8)

    /// Neither whitespace, letter nor number: `[^\s\p{L}\p{N}]`.
    var isOther: Bool { rawValue & 7 == 0 }
}

enum UnicodeClasses {
    /// ASCII fast path: 99.97 % of the GSM8K questions' characters are ASCII.
    private static let ascii: [ScalarClass] = (0..<128).map { classifySlow(Unicode.Scalar(UInt8($0))) }

    @inline(__always)
    static func classify(_ s: Unicode.Scalar) -> ScalarClass {
        s.value < 128 ? ascii[Int(s.value)] : classifySlow(s)
    }

    static func classifySlow(_ s: Unicode.Scalar) -> ScalarClass {
        var c: ScalarClass = []
        let p = s.properties
        if p.isWhitespace { c.insert(.whitespace) }
        if s == "\r" || s == "\n" { c.insert(.newline) }
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c.insert(.letter)
        case .decimalNumber, .letterNumber, .otherNumber:
            c.insert(.number)
        default:
            break
        }
        return c
    }

    /// Rust's `char::is_numeric` (categories Nd, Nl, No), as HF's `Digits` pre-tokenizer uses.
    static func isNumeric(_ s: Unicode.Scalar) -> Bool { classify(s).contains(.number) }

    /// Rust regex `\w` (Unicode): alphabetic, marks, decimal numbers, connector punctuation, join controls.
    static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}

// MARK: - Scanned text

/// A string as Unicode scalars with their classes and UTF-8 offsets; the scanners return ranges of
/// scalar indices and the caller cuts the string by UTF-8 offsets.
struct ScannedText {
    var scalars: [Unicode.Scalar] = []
    var classes: [ScalarClass] = []
    /// utf8Offsets[i] is the UTF-8 offset of scalar i; utf8Offsets[count] the total length.
    var utf8Offsets: [Int] = []

    init(_ text: String) {
        let n = text.unicodeScalars.count
        scalars.reserveCapacity(n)
        classes.reserveCapacity(n)
        utf8Offsets.reserveCapacity(n + 1)
        var off = 0
        for s in text.unicodeScalars {
            scalars.append(s)
            classes.append(UnicodeClasses.classify(s))
            utf8Offsets.append(off)
            off += UTF8.width(s)
        }
        utf8Offsets.append(off)
    }

    var count: Int { scalars.count }
}

// MARK: - The scanners

/// A full-string scanner: returns the matches (scalar index ranges) in order, as `find_iter` would.
protocol RegexScanner: Sendable {
    func matches(in text: ScannedText) -> [Range<Int>]
}

/// A hand-written scanner of an alternation regex: the end of the match starting at `i`
/// (every position starts a match in these patterns, so the matches tile the text).
protocol AlternationScanner: RegexScanner {
    func matchEnd(_ t: ScannedText, _ i: Int, _ n: Int) -> Int
}

extension AlternationScanner {
    func matches(in t: ScannedText) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(t.count / 3 + 1)
        var i = 0
        let n = t.count
        while i < n {
            let end = matchEnd(t, i, n)
            out.append(i..<end)
            i = end
        }
        return out
    }
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
struct GPT2Scanner: AlternationScanner {
    static let pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    @inline(__always)
    func matchEnd(_ t: ScannedText, _ i: Int, _ n: Int) -> Int {
        let s = t.scalars, c = t.classes
        // 's 't 're 've 'm 'll 'd (case-sensitive)
        if s[i] == "'", i + 1 < n {
            switch s[i + 1] {
            case "s", "t", "m", "d": return i + 2
            case "r", "v": if i + 2 < n, s[i + 2] == "e" { return i + 3 }
            case "l": if i + 2 < n, s[i + 2] == "l" { return i + 3 }
            default: break
            }
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space is only useful when it
        // is followed by the class (a bare space is none of the three classes).
        let start = (s[i] == " " && i + 1 < n) ? i + 1 : i
        let k = c[start]
        if k.contains(.letter) { return run(c, from: start + 1, n) { $0.contains(.letter) } }
        if k.contains(.number) { return run(c, from: start + 1, n) { $0.contains(.number) } }
        if k.isOther { return run(c, from: start + 1, n) { $0.isOther } }
        // `\s+(?!\S)` backs off one character when the run is followed by a non-space; `\s+` otherwise.
        if c[i].contains(.whitespace) {
            let j = run(c, from: i + 1, n) { $0.contains(.whitespace) }
            if j == n { return j }
            return j - i >= 2 ? j - 1 : j
        }
        return i + 1 // unreachable: every scalar is in one of the classes above
    }
}

/// Llama-3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// and Qwen2's, the same with `\p{N}` (one digit) for `\p{N}{1,3}`.
struct Llama3Scanner: AlternationScanner {
    static let pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// 3 for Llama-3, 1 for Qwen2.
    var maxDigits = 3

    /// Oniguruma's case folding for the letters of the contractions: ASCII, plus U+017F LATIN
    /// SMALL LETTER LONG S, which folds to "s".
    @inline(__always)
    private func fold(_ s: Unicode.Scalar) -> Unicode.Scalar {
        if s.value >= 65 && s.value <= 90 { return Unicode.Scalar(s.value + 32)! }
        if s.value == 0x17F { return "s" }
        return s
    }

    @inline(__always)
    func matchEnd(_ t: ScannedText, _ i: Int, _ n: Int) -> Int {
        let s = t.scalars, c = t.classes
        if s[i] == "'", i + 1 < n {
            switch fold(s[i + 1]) {
            case "s", "t", "m", "d": return i + 2
            case "r", "v": if i + 2 < n, fold(s[i + 2]) == "e" { return i + 3 }
            case "l": if i + 2 < n, fold(s[i + 2]) == "l" { return i + 3 }
            default: break
            }
        }
        let k = c[i]
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if !k.contains(.newline), !k.contains(.letter), !k.contains(.number), i + 1 < n, c[i + 1].contains(.letter) {
            return run(c, from: i + 2, n) { $0.contains(.letter) }
        }
        if k.contains(.letter) { return run(c, from: i + 1, n) { $0.contains(.letter) } }
        // `\p{N}{1,3}`
        if k.contains(.number) {
            var j = i + 1
            while j < n, j < i + maxDigits, c[j].contains(.number) { j += 1 }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let start = (s[i] == " " && i + 1 < n) ? i + 1 : i
        if c[start].isOther {
            let j = run(c, from: start + 1, n) { $0.isOther }
            return run(c, from: j, n) { $0.contains(.newline) }
        }
        if k.contains(.whitespace) {
            let j = run(c, from: i + 1, n) { $0.contains(.whitespace) }
            // `\s*[\r\n]+`: through the last newline of the whitespace run.
            var p = j - 1
            while p >= i, !c[p].contains(.newline) { p -= 1 }
            if p >= i { return p + 1 }
            // `\s+(?!\S)` then `\s+`
            if j == n { return j }
            return j - i >= 2 ? j - 1 : j
        }
        return i + 1
    }
}

@inline(__always)
private func run(_ c: [ScalarClass], from start: Int, _ n: Int, _ pred: (ScalarClass) -> Bool) -> Int {
    var j = start
    while j < n, pred(c[j]) { j += 1 }
    return j
}

/// Any other pattern, through ICU. Ranges come back in UTF-16 and are mapped to scalar indices.
final class ICURegexScanner: RegexScanner, @unchecked Sendable {
    private let regex: NSRegularExpression

    init(pattern: String, path: String, key: String) throws {
        do {
            regex = try NSRegularExpression(pattern: pattern, options: [])
        } catch {
            throw TokenizerError.unsupportedOption(path: path, key: key, value: pattern,
                                                   detail: "ICU cannot compile this regex (\(error.localizedDescription))")
        }
    }

    func matches(in t: ScannedText) -> [Range<Int>] {
        var text = String.UnicodeScalarView()
        text.append(contentsOf: t.scalars)
        let string = String(text)
        // UTF-16 offset of each scalar, to map ICU's ranges back.
        var utf16ToScalar: [Int: Int] = [:]
        var u = 0
        for (i, s) in t.scalars.enumerated() {
            utf16ToScalar[u] = i
            u += UTF16.width(s)
        }
        utf16ToScalar[u] = t.count
        let ns = string as NSString
        return regex.matches(in: string, options: [], range: NSRange(location: 0, length: ns.length)).compactMap { m in
            guard let a = utf16ToScalar[m.range.location], let b = utf16ToScalar[m.range.location + m.range.length] else { return nil }
            return a..<b
        }
    }
}
