// GPT-2's byte alphabet (`bytes_to_unicode` in openai/gpt-2 encoder.py and HF's byte_level.rs):
// the printable bytes !..~, ¡..¬, ®..ÿ stand for themselves; the other 68 bytes are spelled with
// U+0100 upwards, in byte order. Every UTF-8 byte thus has a one-scalar printable spelling.

enum ByteLevelAlphabet {
    /// byte → scalar value.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// scalar value → byte (only for the 256 alphabet scalars; all are < 0x144).
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in byteToScalar.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// Spells the UTF-8 bytes of `text` in the alphabet.
    static func encode(_ text: String) -> String {
        var allPrintableASCII = true
        for b in text.utf8 where !(0x21...0x7E).contains(b) { allPrintableASCII = false; break }
        if allPrintableASCII { return text }
        var scalars = String.UnicodeScalarView()
        for b in text.utf8 { scalars.append(Unicode.Scalar(byteToScalar[Int(b)])!) }
        return String(scalars)
    }

    /// The byte a scalar spells, if it is in the alphabet.
    @inline(__always)
    static func byte(for s: Unicode.Scalar) -> UInt8? {
        let v = Int(s.value)
        guard v < scalarToByte.count else { return nil }
        let b = scalarToByte[v]
        return b >= 0 ? UInt8(b) : nil
    }

    static func isInAlphabet(_ token: String) -> Bool { token.unicodeScalars.allSatisfy { byte(for: $0) != nil } }
}
