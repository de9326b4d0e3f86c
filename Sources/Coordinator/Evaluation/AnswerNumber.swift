// Grading a generated answer (SPEC "Evaluating a capability", generate): the first number, compared as numbers.
import Foundation

public enum AnswerNumber {
    /// The first number in `text`: an optional leading minus, a digit, then digits and commas,
    /// then an optional "." with digits (the pattern -?\d[\d,]*(\.\d+)?), commas removed.
    /// "The answer is 1,234.5 dollars" → "1234.5"; "-3 degrees" → "-3"; no digit → nil.
    public static func first(in text: String) -> String? {
        let c = Array(text.unicodeScalars)
        func digit(_ i: Int) -> Bool { i < c.count && c[i].value >= 48 && c[i].value <= 57 }
        var i = 0
        while i < c.count {
            let minus = c[i] == "-" && digit(i + 1)
            guard minus || digit(i) else { i += 1; continue }
            var out = minus ? "-" : ""
            var k = minus ? i + 1 : i
            while k < c.count && (digit(k) || c[k] == ",") {
                if c[k] != "," { out.unicodeScalars.append(c[k]) }
                k += 1
            }
            if k < c.count && c[k] == "." && digit(k + 1) {
                out += "."
                k += 1
                while digit(k) { out.unicodeScalars.append(c[k]); k += 1 }
            }
            return out
        }
        return nil
    }

    /// Whether a completion answers `gold`: equal first numbers (as numbers); a gold answer
    /// without a number is compared as a string, whitespace and a final period trimmed.
    public static func isCorrect(completion: String, gold: String) -> Bool {
        if let g = first(in: gold) {
            guard let p = first(in: completion), let pv = Double(p), let gv = Double(g) else { return false }
            return pv == gv
        }
        return trimmed(completion) == trimmed(gold)
    }

    static func trimmed(_ s: String) -> String {
        var t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        if t.hasSuffix(".") { t.removeLast() }
        return t.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
