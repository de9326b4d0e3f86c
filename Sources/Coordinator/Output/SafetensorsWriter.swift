// Writes safetensors files (scores as float64 [L, J], masks as uint8) that numpy/torch users load.
import Foundation
import Shard

/// One tensor to write: its little-endian bytes, dtype name and shape (safetensors' format:
/// an 8-byte header length, a JSON header of name → {dtype, shape, data_offsets}, the data).
public struct TensorPayload {
    public let name: String
    public let dtype: String
    public let shape: [Int]
    public let bytes: Data

    public static func float64(_ name: String, _ values: [Double], shape: [Int]) -> TensorPayload {
        TensorPayload(name: name, dtype: "F64", shape: shape, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    public static func float32(_ name: String, _ values: [Float], shape: [Int]) -> TensorPayload {
        TensorPayload(name: name, dtype: "F32", shape: shape, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    public static func uint8(_ name: String, _ values: [UInt8], shape: [Int]) -> TensorPayload {
        TensorPayload(name: name, dtype: "U8", shape: shape, bytes: Data(values))
    }

    public static func int64(_ name: String, _ values: [Int64], shape: [Int]) -> TensorPayload {
        TensorPayload(name: name, dtype: "I64", shape: shape, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) })
    }

    static let elementSize = ["F64": 8, "F32": 4, "U8": 1, "I64": 8]
}

public enum SafetensorsWriter {
    /// The file's bytes: tensors in the given order, header keys sorted (as the Python library
    /// writes them), `__metadata__` string pairs, header padded with spaces to 8 bytes.
    public static func encode(_ tensors: [TensorPayload], metadata: [String: String] = [:]) throws -> Data {
        var seen = Set<String>()
        var entries: [String] = []
        var offset = 0
        for t in tensors {
            guard seen.insert(t.name).inserted else { throw OutputError.badTensor(name: t.name, detail: "written twice") }
            let n = t.shape.reduce(1, *)
            guard let size = TensorPayload.elementSize[t.dtype], n * size == t.bytes.count else {
                throw OutputError.badTensor(name: t.name, detail: "\(t.bytes.count) bytes do not fit \(t.dtype) \(t.shape)")
            }
            entries.append("\(jsonString(t.name)):{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
            offset += t.bytes.count
        }
        if !metadata.isEmpty {
            let m = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
            entries.insert("\"__metadata__\":{\(m)}", at: 0)
        }
        var header = Data(("{" + entries.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out = Data()
        var len = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(header)
        for t in tensors { out.append(t.bytes) }
        return out
    }

    public static func write(_ tensors: [TensorPayload], metadata: [String: String] = [:], to path: String) throws {
        try AtomicFile.write(try encode(tensors, metadata: metadata), to: path)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
