// safetensors reader (single file, or an HF directory with sharded files and an index).
import Foundation

/// One `.safetensors` file: an 8-byte little-endian header length, a JSON header mapping each
/// tensor name to dtype, shape and data offsets, then the raw little-endian data.
///
/// The header is parsed by `HeaderJSON` (strict, duplicate keys refused, integers exact) and
/// every tensor's byte range is checked against the data section at open.
public final class SafetensorsFile: TensorSource {
    public let path: String
    public let tensors: [String: TensorEntry]
    /// Tensor names in header order.
    public let tensorOrder: [String]
    public let metadata: [String: String]
    private let file: MappedFile
    private let ranges: [String: (start: Int, dtype: String)]

    /// Bytes per element of the dtypes the safetensors format defines with whole-byte elements
    /// (safetensors' `Dtype`); sub-byte ones (F4, F6_*) are refused by name at open.
    static let elementSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4,
        "I64": 8, "U64": 8, "F64": 8, "C64": 8,
    ]
    /// Dtypes converted to Float; others (integers, fp8) are reported by name when read.
    static let floatDTypes: Set<String> = ["F64", "F32", "F16", "BF16"]
    /// A header larger than this is refused before it is parsed (the Rust reference caps at 100 MB).
    static let maxHeaderLength = 100_000_000

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
        guard headerLength <= UInt64(Self.maxHeaderLength) else {
            throw CheckpointError.malformedHeader(path: path, detail: "header length \(headerLength) exceeds \(Self.maxHeaderLength) bytes")
        }
        let header = try c.readBytes(Int(headerLength), "safetensors JSON header")
        let dataStart = 8 + Int(headerLength)
        let dataCount = file.count - dataStart

        let root: HeaderJSON
        do {
            root = try HeaderJSON.parse(header)
        } catch let f as HeaderJSON.Failure {
            throw Self.error(f, path: path, in: "the JSON header", base: 8, duplicate: "tensor")
        }
        guard let members = root.members else {
            throw CheckpointError.malformedHeader(path: path, detail: "JSON header is \(root.typeName), not an object")
        }
        var entries: [String: TensorEntry] = [:]
        var ranges: [String: (Int, String)] = [:]
        var order: [String] = []
        var meta: [String: String] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                guard let m = value.members else {
                    throw CheckpointError.malformedHeader(path: path, detail: "'__metadata__' is \(value.typeName), not an object of strings")
                }
                for (k, v) in m {
                    guard let s = v.string else {
                        throw CheckpointError.malformedHeader(path: path, detail: "'__metadata__' key '\(k)' is \(v.typeName), not a string")
                    }
                    meta[k] = s
                }
                continue
            }
            guard let t = value.members else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' is \(value.typeName), not an object")
            }
            func field(_ k: String) -> HeaderJSON? { t.first(where: { $0.key == k })?.value }
            guard let dtype = field("dtype")?.string else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has no string 'dtype'")
            }
            guard let size = Self.elementSizes[dtype] else {
                throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: dtype)
            }
            guard let dims = field("shape")?.elements else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has no 'shape' array")
            }
            var shape: [Int] = []
            var elements = 1
            for d in dims {
                guard let n = d.int, n >= 0, n < 1 << 40 else {
                    throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has a bad dimension in 'shape' (a non-negative integer below 2^40 is needed)")
                }
                let (p, o) = elements.multipliedReportingOverflow(by: n)
                guard !o, p < 1 << 44 else {
                    throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has too many elements")
                }
                elements = p
                shape.append(n)
            }
            guard let offs = field("data_offsets")?.elements, offs.count == 2, let begin = offs[0].int, let end = offs[1].int else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has no 'data_offsets' pair of integers")
            }
            guard begin >= 0, end >= begin, end <= dataCount else {
                throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "data_offsets [\(begin), \(end)] but the data section has \(dataCount) bytes")
            }
            guard end - begin == elements * size else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' spans \(end - begin) bytes, but \(dtype) \(shape) needs \(elements * size)")
            }
            entries[name] = TensorEntry(name: name, shape: shape, storage: dtype)
            ranges[name] = (dataStart + begin, dtype)
            order.append(name)
        }
        tensors = entries
        tensorOrder = order
        self.ranges = ranges
        metadata = meta
    }

    public func read(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let e = tensors[name], let r = ranges[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        guard destination.count == e.elementCount else {
            throw CheckpointError.shapeMismatch(path: path, tensor: name, expected: [destination.count], found: e.shape)
        }
        guard Self.floatDTypes.contains(r.dtype), let size = Self.elementSizes[r.dtype] else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: r.dtype)
        }
        let n = e.elementCount
        guard n > 0 else { return }
        guard let bytes = file.bytes(at: r.start, count: n * size), let src = bytes.baseAddress,
              let dst = destination.baseAddress else {
            throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "bytes \(r.start)..<\(r.start + n * size) but the file has \(file.count)")
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

    /// A float64 tensor, exactly (run outputs such as scores.safetensors keep Double scores).
    public func readDoubles(_ name: String) throws -> [Double] {
        guard let e = tensors[name], let r = ranges[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        guard r.dtype == "F64" else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: "\(r.dtype) (a float64 tensor was expected)")
        }
        let n = e.elementCount
        guard let bytes = file.bytes(at: r.start, count: n * 8) else {
            throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "offset \(r.start)")
        }
        return (0..<n).map { bytes.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
    }

    /// A `HeaderJSON` failure as the checkpoint error that names the file, the key and the byte.
    static func error(_ f: HeaderJSON.Failure, path: String, in what: String, base: Int, duplicate noun: String) -> CheckpointError {
        switch f {
        case let .syntax(expected, offset):
            return .malformedHeader(path: path, detail: "\(what) is not valid JSON: expected \(expected) at byte \(base + offset)")
        case let .invalidUTF8(offset):
            return .invalidName(path: path, detail: "the string at byte \(base + offset) of \(what) is not valid UTF-8 (names must be UTF-8)")
        case let .duplicateKey(key):
            return .malformedHeader(path: path, detail: "\(noun) '\(key)' appears twice in \(what)")
        case let .tooDeep(offset):
            return .malformedHeader(path: path, detail: "\(what) nests deeper than \(HeaderJSON.maxDepth) levels at byte \(base + offset)")
        }
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
            let root: HeaderJSON
            do {
                root = try HeaderJSON.parse(idx)
            } catch let f as HeaderJSON.Failure {
                throw SafetensorsFile.error(f, path: indexPath, in: "the index", base: 0, duplicate: "key")
            }
            guard let wm = root.members?.first(where: { $0.key == "weight_map" })?.value.members else {
                throw CheckpointError.malformedHeader(path: indexPath, detail: "no 'weight_map' object of tensor name → shard file")
            }
            var map: [String: String] = [:]
            for (name, v) in wm {
                guard let shard = v.string else {
                    throw CheckpointError.malformedHeader(path: indexPath, detail: "weight_map entry of tensor '\(name)' is \(v.typeName), not a shard file name")
                }
                map[name] = shard
            }
            for shard in Set(map.values).sorted() {
                guard !shard.contains("/"), !shard.isEmpty, shard != ".", shard != ".." else {
                    throw CheckpointError.malformedHeader(path: indexPath, detail: "shard name '\(shard)' must be a file in the same directory")
                }
                files.append(try SafetensorsFile(path: url.appendingPathComponent(shard).path))
            }
            // Every tensor the index names must be in the shard it names.
            var byPath: [String: SafetensorsFile] = [:]
            for f in files { byPath[URL(fileURLWithPath: f.path).lastPathComponent] = f }
            for (name, shard) in map.sorted(by: { $0.key < $1.key }) where byPath[shard]?.tensors[name] == nil {
                throw CheckpointError.missingTensor(path: url.appendingPathComponent(shard).path, tensor: name)
            }
        } else {
            throw CheckpointError.cannotOpen(path: path, reason: "no model.safetensors or model.safetensors.index.json in the model directory")
        }
        var owner: [String: SafetensorsFile] = [:]
        var entries: [String: TensorEntry] = [:]
        for f in files {
            for name in f.tensorOrder {
                guard let e = f.tensors[name] else { continue }
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
