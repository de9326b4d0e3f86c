// Reading text fields out of JSONL files (GSM8K and friends), with line-numbered errors.
import Foundation

public enum DataFileError: Error, LocalizedError, Equatable {
    case unreadable(path: String, reason: String)
    case malformedLine(path: String, line: Int, detail: String)
    case missingField(path: String, line: Int, field: String)
    case indexOutOfRange(path: String, index: Int, count: Int)

    public var errorDescription: String? {
        switch self {
        case let .unreadable(path, reason): return "\(path): cannot read (\(reason))"
        case let .malformedLine(path, line, detail): return "\(path):\(line): not a JSON object (\(detail)); fix or remove that line"
        case let .missingField(path, line, field): return "\(path):\(line): no string field '\(field)'"
        case let .indexOutOfRange(path, index, count): return "\(path): index \(index) is past the last row (\(count) rows)"
        }
    }
}

public enum JSONLines {
    /// Each non-empty line parsed as a JSON object, with its 1-based line number.
    public static func objects(path: String) throws -> [(line: Int, object: [String: Any])] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataFileError.unreadable(path: path, reason: FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        var out: [(Int, [String: Any])] = []
        var lineNo = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNo += 1
            if raw.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            let obj: Any
            do { obj = try JSONSerialization.jsonObject(with: Data(raw)) } catch {
                throw DataFileError.malformedLine(path: path, line: lineNo, detail: "invalid JSON")
            }
            guard let dict = obj as? [String: Any] else {
                throw DataFileError.malformedLine(path: path, line: lineNo, detail: "a JSON value that is not an object")
            }
            out.append((lineNo, dict))
        }
        return out
    }

    /// The string `field` of every line (stopping once `limitCharacters` are collected).
    public static func strings(path: String, field: String, limitCharacters: Int = .max) throws -> [String] {
        var out: [String] = []
        var total = 0
        for (line, obj) in try objects(path: path) {
            guard let s = obj[field] as? String else { throw DataFileError.missingField(path: path, line: line, field: field) }
            out.append(s)
            total += s.count
            if total >= limitCharacters { break }
        }
        return out
    }
}

public enum GSM8KFile {
    /// The `question` of row `index` (0-based) of a GSM8K JSONL file.
    public static func question(path: String, index: Int) throws -> String {
        let rows = try JSONLines.objects(path: path)
        guard index < rows.count else { throw DataFileError.indexOutOfRange(path: path, index: index, count: rows.count) }
        guard let q = rows[index].object["question"] as? String else {
            throw DataFileError.missingField(path: path, line: rows[index].line, field: "question")
        }
        return q
    }
}
