// RFC 4180 CSV (quoted fields, doubled quotes, newlines inside quotes) as header-keyed records.
import Foundation

public enum CSVRecords {
    /// Records keyed by the header row, each with the 1-based line where it starts.
    public static func read(path: String) throws -> [(line: Int, fields: [String: String])] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataFileError.unreadable(path: path, reason: FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw DataFileError.unreadable(path: path, reason: "not UTF-8 text")
        }
        var rows: [(Int, [String])] = []
        var field = ""
        var row: [String] = []
        var inQuotes = false
        var line = 1, rowStart = 1
        var chars = Array(text.unicodeScalars)[...]
        var atFieldStart = true
        while let c = chars.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if chars.first == "\"" { field.unicodeScalars.append("\""); chars.removeFirst() } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"" where atFieldStart:
                inQuotes = true
                atFieldStart = false
            case ",":
                row.append(field); field = ""; atFieldStart = true
            case "\r":
                continue
            case "\n":
                row.append(field); field = ""; atFieldStart = true
                if !(row.count == 1 && row[0].isEmpty) { rows.append((rowStart, row)) }
                row = []
                line += 1
                rowStart = line
            default:
                field.unicodeScalars.append(c)
                atFieldStart = false
            }
        }
        if inQuotes { throw DataFileError.malformedLine(path: path, line: rowStart, detail: "a quoted field is never closed") }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append((rowStart, row)) }
        guard let header = rows.first else { return [] }
        return try rows.dropFirst().map { (l, values) in
            guard values.count == header.1.count else {
                throw DataFileError.malformedLine(path: path, line: l, detail: "\(values.count) fields where the header has \(header.1.count)")
            }
            return (l, Dictionary(zip(header.1, values), uniquingKeysWith: { a, _ in a }))
        }
    }
}
