// safetensors reader (single file, or an HF directory with sharded files and an index).
import Foundation

/// One `.safetensors` file: an 8-byte little-endian header length, a JSON header mapping each
/// tensor name to dtype, shape and data offsets, then the raw little-endian data.
public final class SafetensorsFile: TensorSource {
    public let path: String
    public let tensors: [String: TensorEntry]
    public let metadata: [String: String]
    private let file: MappedFile
    private let ranges: [String: (start: Int, dtype: String)]

    static let elementSizes: [String: Int] = [
        "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    ]
    /// Dtypes converted to Float; others (integers) are reported by name when a weight needs them.
    static let floatDTypes: Set<String> = ["F64", "F32", "F16", "BF16"]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        var c = ByteCursor(file.allBytes, path: path)
        let headerLength = try c.read(UInt64.self, "safetensors header length")
        guard headerLength <= UInt64(c.remaining) else {
            throw CheckpointError.malformedHeader(path: path, detail: "header length \(headerLength) is past the end of the \(file.count)-byte file")
        }
        guard headerLength <= 100_000_000 else {
            throw CheckpointError.malformedHeader(path: path, detail: "header length \(headerLength) exceeds 100 MB")
        }
        let header = try c.readBytes(Int(headerLength), "safetensors JSON header")
        let dataStart = 8 + Int(headerLength)
        let dataCount = file.count - dataStart

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(header), options: [])
        } catch {
            throw CheckpointError.malformedHeader(path: path, detail: "JSON header does not parse (\(error.localizedDescription))")
        }
        guard let root = json as? [String: Any] else {
            throw CheckpointError.malformedHeader(path: path, detail: "JSON header is not an object")
        }
        var entries: [String: TensorEntry] = [:]
        var ranges: [String: (Int, String)] = [:]
        var meta: [String: String] = [:]
        for (name, value) in root {
            if name == "__metadata__" {
                if let m = value as? [String: Any] {
                    for (k, v) in m { if let s = v as? String { meta[k] = s } }
                }
                continue
            }
            guard let t = value as? [String: Any] else {
                throw CheckpointError.malformedHeader(path: path, detail: "entry '\(name)' is not an object")
            }
            guard let dtype = t["dtype"] as? String else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has no string 'dtype'")
            }
            guard let size = Self.elementSizes[dtype] else {
                throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: dtype)
            }
            guard let shapeAny = t["shape"] as? [Any], let shape = Self.intArray(shapeAny), shape.allSatisfy({ $0 >= 0 && $0 < 1 << 40 }) else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has no valid 'shape'")
            }
            guard let offAny = t["data_offsets"] as? [Any], let offs = Self.intArray(offAny), offs.count == 2 else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has no valid 'data_offsets'")
            }
            var elements = 1
            for d in shape {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o, p < 1 << 44 else {
                    throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has too many elements")
                }
                elements = p
            }
            let (begin, end) = (offs[0], offs[1])
            guard begin >= 0, end >= begin, end <= dataCount else {
                throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "data_offsets [\(begin), \(end)] but the data section has \(dataCount) bytes")
            }
            guard end - begin == elements * size else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' spans \(end - begin) bytes, but \(dtype) \(shape) needs \(elements * size)")
            }
            entries[name] = TensorEntry(name: name, shape: shape, storage: dtype)
            ranges[name] = (dataStart + begin, dtype)
        }
        tensors = entries
        self.ranges = ranges
        metadata = meta
    }

    public func read(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let e = tensors[name], let r = ranges[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        guard destination.count == e.elementCount else {
            throw CheckpointError.shapeMismatch(path: path, tensor: name, expected: [destination.count], found: e.shape)
        }
        guard Self.floatDTypes.contains(r.dtype) else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: r.dtype)
        }
        let n = e.elementCount
        guard n > 0 else { return }
        guard let bytes = file.bytes(at: r.start, count: n * Self.elementSizes[r.dtype]!), let src = bytes.baseAddress,
              let dst = destination.baseAddress else {
            throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "offset \(r.start)")
        }
        switch r.dtype {
        case "F32": memcpy(dst, src, n * 4)
        case "F64": for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case "F16": for i in 0..<n { dst[i] = floatFromF16(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        default: for i in 0..<n { dst[i] = floatFromBF16(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        }
    }

    /// An integer tensor (I64, I32, I16, I8, U8, BOOL) as Int: token ids and masks in test and
    /// data files. Float tensors go through `read(_:into:)`.
    public func readIntegers(_ name: String) throws -> [Int] {
        guard let e = tensors[name], let r = ranges[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        let size = Self.elementSizes[r.dtype]!
        guard !Self.floatDTypes.contains(r.dtype) else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: "\(r.dtype) (an integer tensor was expected)")
        }
        let n = e.elementCount
        guard let bytes = file.bytes(at: r.start, count: n * size) else {
            throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "offset \(r.start)")
        }
        return (0..<n).map { i -> Int in
            switch r.dtype {
            case "I64": return Int(bytes.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
            case "I32": return Int(bytes.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))
            case "I16": return Int(bytes.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))
            case "I8": return Int(bytes.load(fromByteOffset: i, as: Int8.self))
            default: return Int(bytes.load(fromByteOffset: i, as: UInt8.self))
            }
        }
    }

    private static func intArray(_ a: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in a {
            // JSONSerialization yields NSNumber; reject fractions.
            guard let n = v as? NSNumber else { return nil }
            let d = n.doubleValue
            guard d == d.rounded(), abs(d) < 9e15 else { return nil }
            out.append(Int(d))
        }
        return out
    }
}

/// An HF model directory: `config.json` plus `model.safetensors`, or shards listed by
/// `model.safetensors.index.json`'s `weight_map`. Tensors of all shards are seen as one set.
public final class HFDirectory: TensorSource {
    public let path: String
    public let tensors: [String: TensorEntry]
    public let configData: Data
    private let owner: [String: SafetensorsFile]

    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        let configURL = url.appendingPathComponent("config.json")
        guard let cfg = FileManager.default.contents(atPath: configURL.path) else {
            throw CheckpointError.cannotOpen(path: configURL.path, reason: "no config.json in the model directory")
        }
        configData = cfg
        let single = url.appendingPathComponent("model.safetensors").path
        let indexPath = url.appendingPathComponent("model.safetensors.index.json").path
        var files: [SafetensorsFile] = []
        if FileManager.default.fileExists(atPath: single) {
            files = [try SafetensorsFile(path: single)]
        } else if let idx = FileManager.default.contents(atPath: indexPath) {
            guard let obj = try? JSONSerialization.jsonObject(with: idx) as? [String: Any],
                  let map = obj["weight_map"] as? [String: String] else {
                throw CheckpointError.malformedHeader(path: indexPath, detail: "no 'weight_map' object of tensor name → shard file")
            }
            for shard in Set(map.values).sorted() {
                guard !shard.contains("/") else {
                    throw CheckpointError.malformedHeader(path: indexPath, detail: "shard name '\(shard)' must be a file in the same directory")
                }
                files.append(try SafetensorsFile(path: url.appendingPathComponent(shard).path))
            }
            // Every tensor the index names must be in the shard it names.
            let byPath = Dictionary(uniqueKeysWithValues: files.map { (URL(fileURLWithPath: $0.path).lastPathComponent, $0) })
            for (name, shard) in map where byPath[shard]?.tensors[name] == nil {
                throw CheckpointError.missingTensor(path: url.appendingPathComponent(shard).path, tensor: name)
            }
        } else {
            throw CheckpointError.cannotOpen(path: path, reason: "no model.safetensors or model.safetensors.index.json in the model directory")
        }
        var owner: [String: SafetensorsFile] = [:]
        var entries: [String: TensorEntry] = [:]
        for f in files {
            for (name, e) in f.tensors {
                if owner[name] != nil {
                    throw CheckpointError.malformedHeader(path: f.path, detail: "tensor '\(name)' is in two shards")
                }
                owner[name] = f
                entries[name] = e
            }
        }
        self.owner = owner
        tensors = entries
    }

    public func read(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let f = owner[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        try f.read(name, into: destination)
    }
}
