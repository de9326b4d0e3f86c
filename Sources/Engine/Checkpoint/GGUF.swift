// GGUF v2/v3 container reader: header, metadata, tensor infos, tensor data (llama.cpp's format).
import Foundation

// MARK: - Metadata values

/// One GGUF metadata value, typed as the file declares it (gguf.md, "GGUF value types").
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array([GGUFValue])

    /// Any integer type as Int (nil for non-integers or values beyond Int's range).
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        case let .bool(v): return v ? 1 : 0
        default: return nil
        }
    }

    /// Any numeric type as Double.
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    public var arrayValue: [GGUFValue]? { if case let .array(a) = self { return a }; return nil }
}

// MARK: - ggml tensor types

/// ggml's tensor type ids (ggml.h `enum ggml_type`, gguf-py's `GGMLQuantizationType`) with their
/// block layout. Every id ggml defines is listed so that a file holding a type this reader cannot
/// convert still opens, lists its tensors and bounds-checks them; only reading such a tensor
/// fails, by name. An id outside this list cannot be sized and is refused at open.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29
    case bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// The name ggml and gguf-py print ("Q4_K", "IQ4_NL", …).
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .f64: return "F64"
        case .i8: return "I8"
        case .i16: return "I16"
        case .i32: return "I32"
        case .i64: return "I64"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q8_1: return "Q8_1"
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        case .iq2_xxs: return "IQ2_XXS"
        case .iq2_xs: return "IQ2_XS"
        case .iq3_xxs: return "IQ3_XXS"
        case .iq1_s: return "IQ1_S"
        case .iq4_nl: return "IQ4_NL"
        case .iq3_s: return "IQ3_S"
        case .iq2_s: return "IQ2_S"
        case .iq4_xs: return "IQ4_XS"
        case .iq1_m: return "IQ1_M"
        case .tq1_0: return "TQ1_0"
        case .tq2_0: return "TQ2_0"
        case .mxfp4: return "MXFP4"
        case .nvfp4: return "NVFP4"
        case .q1_0: return "Q1_0"
        }
    }

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1, .iq4_nl, .mxfp4: return 32
        case .nvfp4: return 64
        case .q1_0: return 128
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K, .iq2_xxs, .iq2_xs, .iq3_xxs, .iq1_s, .iq3_s, .iq2_s,
             .iq4_xs, .iq1_m, .tq1_0, .tq2_0:
            return 256
        }
    }

    /// Bytes per block (ggml-common.h block structs; gguf-py's GGML_QUANT_SIZES).
    public var bytesPerBlock: Int {
        switch self {
        case .i8: return 1
        case .f16, .bf16, .i16: return 2
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        case .q4_0, .iq4_nl: return 18
        case .q4_1: return 20
        case .q5_0: return 22
        case .q5_1: return 24
        case .q8_0: return 34
        case .q8_1: return 36
        case .mxfp4: return 17
        case .nvfp4: return 36
        case .q1_0: return 18
        case .q2_K: return 84
        case .q3_K: return 110
        case .q4_K: return 144
        case .q5_K: return 176
        case .q6_K: return 210
        case .q8_K: return 292
        case .iq2_xxs: return 66
        case .iq2_xs: return 74
        case .iq3_xxs: return 98
        case .iq1_s: return 50
        case .iq3_s: return 110
        case .iq2_s: return 82
        case .iq4_xs: return 136
        case .iq1_m: return 56
        case .tq1_0: return 54
        case .tq2_0: return 66
        }
    }

    /// Types this reader converts to Float; the others are refused by name when read.
    public var isSupported: Bool {
        switch self {
        case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K: return true
        default: return false
        }
    }
}

// MARK: - The file

public struct GGUFTensorInfo: Sendable {
    public var name: String
    /// ggml's `ne`: dimension 0 is the fastest-varying (the reverse of row-major shape).
    public var ne: [Int]
    public var type: GGMLType
    /// Absolute byte offset of the tensor's data in the file.
    public var fileOffset: Int
    public var byteCount: Int
    public var shape: [Int] { ne.reversed() }
    public var elementCount: Int { ne.reduce(1, *) }
}

/// A parsed GGUF file. All bounds are checked at open; `read` then only converts.
///
/// Everything a size is derived from is checked before it sizes anything: counts against the
/// bytes that remain (a 2^60 tensor count is refused, not allocated), string and array lengths
/// against the bytes they need, dimensions and element counts against overflow, and every
/// tensor's bytes against the file.
public final class GGUFReader: TensorSource {
    public let path: String
    public let version: Int
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order (for `cnl inspect` and stable listings).
    public let metadataKeys: [String]
    public let tensorInfos: [String: GGUFTensorInfo]
    public let tensorOrder: [String]
    public let alignment: Int
    public let tensors: [String: TensorEntry]
    private let file: MappedFile

    static let magic: UInt32 = 0x4655_4747 // "GGUF" read little-endian
    /// ggml's GGML_MAX_DIMS.
    static let maxDims = 4

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        self.path = path
        var c = ByteCursor(file.allBytes, path: path)

        let magic = try c.read(UInt32.self, "GGUF magic")
        guard magic == Self.magic else {
            throw CheckpointError.malformedHeader(path: path, detail: "magic is 0x\(String(magic, radix: 16)), not 'GGUF'")
        }
        let version = Int(try c.read(UInt32.self, "GGUF version"))
        guard version == 2 || version == 3 else {
            let swapped = UInt32(truncatingIfNeeded: version).byteSwapped
            if swapped == 2 || swapped == 3 {
                throw CheckpointError.malformedHeader(path: path, detail: "this is a big-endian GGUF (version \(swapped) byte-swapped), which this reader does not support; convert it with gguf-py's gguf_convert_endian")
            }
            throw CheckpointError.unsupportedVersion(path: path, version: version)
        }
        self.version = version
        let tensorCount = try c.read(UInt64.self, "tensor count")
        let kvCount = try c.read(UInt64.self, "metadata count")
        // A key/value takes at least 8 (key length) + 4 (type) + 1 bytes and a tensor info at
        // least 8 (name length) + 4 (dims) + 8 (one dim) + 4 (type) + 8 (offset). A count no real
        // file has (over 2^32) is corruption; a smaller one that the remaining bytes cannot hold
        // is a truncated file. Either is refused before anything is sized by it.
        try Self.checkCount(kvCount, "metadata entries", minimumSize: 13, &c)
        var md: [String: GGUFValue] = [:]
        var keys: [String] = []
        for i in 0..<Int(kvCount) {
            let key = try Self.readString(&c, "metadata key #\(i)")
            let type = try c.read(UInt32.self, "type of metadata '\(key)'")
            let value = try Self.readValue(&c, type: type, key: key, inArray: false)
            if md.updateValue(value, forKey: key) != nil {
                throw CheckpointError.malformedHeader(path: path, detail: "metadata key '\(key)' appears twice")
            }
            keys.append(key)
        }
        metadata = md
        metadataKeys = keys

        // gguf.md: general.alignment is a uint32, a power of two; 32 when absent.
        var align = 32
        if let a = md["general.alignment"] {
            var v: Int?
            switch a {
            case .uint8, .uint16, .uint32, .uint64, .int8, .int16, .int32, .int64: v = a.intValue
            default: v = nil
            }
            guard let v, v > 0, v & (v - 1) == 0, v <= 1 << 20 else {
                throw CheckpointError.badMetadata(path: path, key: "general.alignment", detail: "must be a power of two up to 2^20, found \(a); the file is corrupt")
            }
            align = v
        }
        alignment = align

        try Self.checkCount(tensorCount, "tensor infos", minimumSize: 32, &c)
        var raw: [(name: String, ne: [Int], type: GGMLType, offset: Int)] = []
        var seen = Set<String>()
        for i in 0..<Int(tensorCount) {
            let name = try Self.readString(&c, "name of tensor #\(i)")
            let nDims = try c.read(UInt32.self, "dimension count of tensor '\(name)'")
            guard nDims >= 1, nDims <= Self.maxDims else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has \(nDims) dimensions (ggml allows 1 to \(Self.maxDims))")
            }
            var ne: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let n = try c.read(UInt64.self, "dimension \(d) of tensor '\(name)'")
                // Zero-sized dimensions are legal (llama.cpp's gguf.cpp only refuses negatives).
                guard n < 1 << 40 else {
                    throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' dimension \(d) is \(n)")
                }
                let (prod, overflow) = elements.multipliedReportingOverflow(by: Int(n))
                guard !overflow, prod < 1 << 44 else {
                    throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' has too many elements")
                }
                elements = prod
                ne.append(Int(n))
            }
            let typeID = try c.read(UInt32.self, "type of tensor '\(name)'")
            guard let type = GGMLType(rawValue: typeID) else {
                throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: "unknown ggml type id \(typeID)")
            }
            guard ne[0] % type.blockSize == 0 else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' row length \(ne[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            let offset = try c.read(UInt64.self, "data offset of tensor '\(name)'")
            guard offset < 1 << 48 else {
                throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "data offset \(offset)")
            }
            guard seen.insert(name).inserted else {
                throw CheckpointError.malformedHeader(path: path, detail: "tensor '\(name)' appears twice")
            }
            raw.append((name, ne, type, Int(offset)))
        }

        // The data section starts at the next multiple of the alignment after the tensor infos.
        let dataStart = (c.offset + align - 1) / align * align
        var infos: [String: GGUFTensorInfo] = [:]
        var entries: [String: TensorEntry] = [:]
        infos.reserveCapacity(raw.count)
        entries.reserveCapacity(raw.count)
        for t in raw {
            guard t.offset % align == 0 else {
                throw CheckpointError.tensorOutOfBounds(path: path, tensor: t.name, detail: "data offset \(t.offset) is not a multiple of the alignment \(align)")
            }
            let elements = t.ne.reduce(1, *)
            let bytes = elements / t.type.blockSize * t.type.bytesPerBlock
            let start = dataStart + t.offset
            guard start <= file.count, bytes <= file.count - start else {
                throw CheckpointError.tensorOutOfBounds(path: path, tensor: t.name, detail: "bytes \(start)..<\(start + bytes) but the file has \(file.count)")
            }
            let info = GGUFTensorInfo(name: t.name, ne: t.ne, type: t.type, fileOffset: start, byteCount: bytes)
            infos[t.name] = info
            entries[t.name] = TensorEntry(name: t.name, shape: info.shape, storage: t.type.name)
        }
        tensorInfos = infos
        tensorOrder = raw.map(\.name)
        tensors = entries
    }

    public func read(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) throws {
        guard let info = tensorInfos[name] else { throw CheckpointError.missingTensor(path: path, tensor: name) }
        guard destination.count == info.elementCount else {
            throw CheckpointError.shapeMismatch(path: path, tensor: name, expected: [destination.count], found: info.shape)
        }
        guard info.type.isSupported else {
            throw CheckpointError.unsupportedDType(path: path, tensor: name, dtype: info.type.name)
        }
        guard info.elementCount > 0 else { return }
        guard let bytes = file.bytes(at: info.fileOffset, count: info.byteCount), let src = bytes.baseAddress,
              let dst = destination.baseAddress else {
            throw CheckpointError.tensorOutOfBounds(path: path, tensor: name, detail: "bytes \(info.fileOffset)..<\(info.fileOffset + info.byteCount) but the file has \(file.count)")
        }
        GGMLDequantizer.dequantize(info.type, from: src, count: info.elementCount, into: dst)
    }

    // MARK: Metadata helpers

    public func string(_ key: String) throws -> String {
        guard let v = metadata[key] else { throw CheckpointError.missingMetadata(path: path, key: key) }
        guard let s = v.stringValue else { throw CheckpointError.badMetadata(path: path, key: key, detail: "expected a string, found \(v)") }
        return s
    }

    public func int(_ key: String) throws -> Int {
        guard let v = metadata[key] else { throw CheckpointError.missingMetadata(path: path, key: key) }
        guard let i = v.intValue else { throw CheckpointError.badMetadata(path: path, key: key, detail: "expected an integer") }
        return i
    }

    public func double(_ key: String) throws -> Double {
        guard let v = metadata[key] else { throw CheckpointError.missingMetadata(path: path, key: key) }
        guard let d = v.doubleValue else { throw CheckpointError.badMetadata(path: path, key: key, detail: "expected a number") }
        return d
    }

    // MARK: Parsing

    private static func checkCount(_ n: UInt64, _ what: String, minimumSize: Int, _ c: inout ByteCursor) throws {
        guard n <= UInt64(UInt32.max) else {
            throw CheckpointError.malformedHeader(path: c.path, detail: "the count of \(what) is \(n), more than any real file holds")
        }
        guard n <= UInt64(c.remaining / minimumSize) else {
            throw CheckpointError.truncated(path: c.path, what: "\(n) \(what)", offset: c.offset, needed: Int(n) * minimumSize, available: c.remaining)
        }
    }

    private static func readString(_ c: inout ByteCursor, _ what: @autoclosure () -> String) throws -> String {
        let n = try c.read(UInt64.self, "length of \(what())")
        guard n <= UInt64(c.remaining) else {
            throw CheckpointError.truncated(path: c.path, what: what(), offset: c.offset, needed: Int(clamping: n), available: c.remaining)
        }
        let raw = try c.readBytes(Int(n), what())
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw CheckpointError.invalidName(path: c.path, detail: "\(what()) at byte \(c.offset - Int(n)) is not valid UTF-8")
        }
        return s
    }

    /// The fewest bytes a value of GGUF type `type` can take (a string is at least its length).
    private static func minimumSize(ofValueType type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 8, 10, 11, 12: return 8
        case 9: return 12
        default: return nil
        }
    }

    private static func readValue(_ c: inout ByteCursor, type: UInt32, key: String, inArray: Bool) throws -> GGUFValue {
        switch type {
        case 0: return .uint8(try c.read(UInt8.self, "value of '\(key)'"))
        case 1: return .int8(try c.read(Int8.self, "value of '\(key)'"))
        case 2: return .uint16(try c.read(UInt16.self, "value of '\(key)'"))
        case 3: return .int16(try c.read(Int16.self, "value of '\(key)'"))
        case 4: return .uint32(try c.read(UInt32.self, "value of '\(key)'"))
        case 5: return .int32(try c.read(Int32.self, "value of '\(key)'"))
        case 6: return .float32(try c.readFloat("value of '\(key)'"))
        case 7:
            let b = try c.read(UInt8.self, "value of '\(key)'")
            guard b <= 1 else { throw CheckpointError.badMetadata(path: c.path, key: key, detail: "bool byte is \(b), not 0 or 1") }
            return .bool(b == 1)
        case 8: return .string(try readString(&c, "value of '\(key)'"))
        case 9:
            // llama.cpp's gguf reader refuses arrays of arrays ("invalid GGUF type"); so does this
            // one, which also bounds the recursion a corrupt file could ask for.
            guard !inArray else {
                throw CheckpointError.badMetadata(path: c.path, key: key, detail: "arrays of arrays are not supported (llama.cpp refuses them too)")
            }
            let elementType = try c.read(UInt32.self, "element type of '\(key)'")
            guard elementType != 9 else {
                throw CheckpointError.badMetadata(path: c.path, key: key, detail: "arrays of arrays are not supported (llama.cpp refuses them too)")
            }
            guard let minSize = minimumSize(ofValueType: elementType) else {
                throw CheckpointError.badMetadata(path: c.path, key: key, detail: "unknown array element type \(elementType)")
            }
            let n = try c.read(UInt64.self, "element count of '\(key)'")
            guard n <= UInt64(UInt32.max) else {
                throw CheckpointError.badMetadata(path: c.path, key: key, detail: "array of \(n) elements, more than any real file holds; the file is corrupt")
            }
            // A count the remaining bytes cannot hold is corrupt: refused before reserving.
            guard n <= UInt64(c.remaining / minSize) else {
                let needed = Int(clamping: n).multipliedReportingOverflow(by: minSize)
                throw CheckpointError.truncated(path: c.path, what: "array '\(key)' of \(n) elements", offset: c.offset,
                                                needed: needed.overflow ? Int.max : needed.partialValue, available: c.remaining)
            }
            var items: [GGUFValue] = []
            // Capped: the count is only an upper bound until the elements have been read.
            items.reserveCapacity(min(Int(n), 1 << 16))
            for _ in 0..<Int(n) { items.append(try readValue(&c, type: elementType, key: key, inArray: true)) }
            return .array(items)
        case 10: return .uint64(try c.read(UInt64.self, "value of '\(key)'"))
        case 11: return .int64(try c.read(Int64.self, "value of '\(key)'"))
        case 12: return .float64(try c.readDouble("value of '\(key)'"))
        default:
            throw CheckpointError.badMetadata(path: c.path, key: key, detail: "unknown value type \(type)")
        }
    }
}
