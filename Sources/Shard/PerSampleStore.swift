// The per-sample score store: each sample's [L × J] score as one zstd frame appended to a rank's stream.
import Foundation

/// Element type of stored scores: f64 keeps them exact (offline curves equal the in-run ones
/// bit for bit); f32 and bf16 trade precision for space.
public enum StorePrecision: String, Codable, Sendable, CaseIterable {
    case f64, f32, bf16

    public var bytesPerValue: Int { self == .f64 ? 8 : self == .f32 ? 4 : 2 }

    public func encode(_ v: [Double]) -> Data {
        switch self {
        case .f64: return v.withUnsafeBufferPointer { Data(buffer: $0) }
        case .f32: return v.map(Float.init).withUnsafeBufferPointer { Data(buffer: $0) }
        case .bf16: return v.map { Self.bfloat16(Float($0)) }.withUnsafeBufferPointer { Data(buffer: $0) }
        }
    }

    public func decode(_ d: Data) -> [Double] {
        d.withUnsafeBytes { raw in
            switch self {
            case .f64: return Array(raw.bindMemory(to: Double.self))
            case .f32: return raw.bindMemory(to: Float.self).map(Double.init)
            case .bf16: return raw.bindMemory(to: UInt16.self).map { Double(Float(bitPattern: UInt32($0) << 16)) }
            }
        }
    }

    /// Round to nearest even on the dropped 16 bits (as torch's float → bfloat16); NaN stays NaN.
    public static func bfloat16(_ f: Float) -> UInt16 {
        let b = f.bitPattern
        if f.isNaN { return UInt16(b >> 16) | 0x40 }
        let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
        return UInt16(rounded >> 16)
    }
}

/// Appends frames to `<directory>/<name>`; `flush()` makes them durable before a checkpoint
/// refers to them. A frame written after the last checkpoint is never referenced, so a crash
/// leaves at most unreferenced bytes at the end of a stream, never a wrong index.
public final class PerSampleStore {
    public let directory: String
    public let name: String
    public let precision: StorePrecision
    private let handle: FileHandle
    private var offset: Int
    /// Bytes before compression and after, over this stream's frames (for the report).
    public private(set) var rawBytes = 0
    public private(set) var compressedBytes = 0

    public init(directory: String, name: String, precision: StorePrecision) throws {
        self.directory = directory
        self.name = name
        self.precision = precision
        let path = (directory as NSString).appendingPathComponent(name)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forUpdatingAtPath: path) else {
            throw CheckpointFileError.cannotWrite(path: path, reason: "cannot open the per-sample store")
        }
        handle = h
        offset = Int(try h.seekToEnd())
    }

    deinit { try? handle.close() }

    /// Appends one sample's scores; returns where they are.
    public func append(index: Int, scores: [Double]) throws -> FinishedSample {
        let raw = precision.encode(scores)
        let frame = try Zstd.compress(raw)
        try handle.write(contentsOf: frame)
        defer { offset += frame.count }
        rawBytes += raw.count
        compressedBytes += frame.count
        return FinishedSample(index: index, store: name, offset: offset, length: frame.count)
    }

    public func flush() throws { try handle.synchronize() }

    /// Reads one sample's scores back (`count` values).
    public static func read(_ entry: FinishedSample, directory: String, precision: StorePrecision, count: Int) throws -> [Double] {
        guard let name = entry.store, let offset = entry.offset, let length = entry.length else {
            throw CheckpointFileError.corrupt(path: directory, detail: "sample \(entry.index) has no stored scores")
        }
        let path = (directory as NSString).appendingPathComponent(name)
        guard let h = FileHandle(forReadingAtPath: path) else {
            throw CheckpointFileError.corrupt(path: path, detail: "missing per-sample stream")
        }
        defer { try? h.close() }
        try h.seek(toOffset: UInt64(offset))
        let frame = try h.read(upToCount: length) ?? Data()
        guard frame.count == length else { throw CheckpointFileError.corrupt(path: path, detail: "stream ends before sample \(entry.index)") }
        return precision.decode(try Zstd.decompress(frame, expectedSize: count * precision.bytesPerValue))
    }
}
