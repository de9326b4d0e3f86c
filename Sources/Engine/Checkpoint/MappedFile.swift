// A read-only memory map of a checkpoint file, with bounds-checked access for the parsers.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A whole file mapped read-only. Pages are file-backed, so mapping a 100 MB GGUF costs no
/// anonymous memory: only the dequantized `Float` weights count toward the load budget.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    private let base: UnsafeMutableRawPointer?
    /// True when `base` is heap memory (`init(path:bytes:)`) rather than a mapping.
    private let ownsHeapCopy: Bool

    public init(path: String) throws {
        self.path = path
        ownsHeapCopy = false
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CheckpointError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CheckpointError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw CheckpointError.cannotOpen(path: path, reason: "it is a directory, not a file")
        }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw CheckpointError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p
    }

    /// An in-memory "file" holding a copy of `bytes`, named `path` in errors: parsers see it
    /// exactly as a mapped file (tests and fuzzing build inputs without touching the disk).
    public init<Bytes: Collection>(path: String, bytes: Bytes) where Bytes.Element == UInt8 {
        self.path = path
        ownsHeapCopy = true
        count = bytes.count
        if count == 0 {
            base = nil
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 64)
        UnsafeMutableRawBufferPointer(start: p, count: count).copyBytes(from: bytes)
        base = p
    }

    deinit {
        guard let base else { return }
        if ownsHeapCopy { base.deallocate() } else { munmap(base, count) }
    }

    /// The bytes `[offset, offset+length)`, or nil when that range is not inside the file.
    public func bytes(at offset: Int, count length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= count, length <= count - offset else { return nil }
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }

    /// The whole file.
    public var allBytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base.map { UnsafeRawPointer($0) }, count: count)
    }
}

/// A little-endian cursor over a byte range; every read is bounds-checked and throws
/// `CheckpointError.truncated` naming the file and what was being read.
public struct ByteCursor {
    public let bytes: UnsafeRawBufferPointer
    public let path: String
    public private(set) var offset: Int

    public init(_ bytes: UnsafeRawBufferPointer, path: String, offset: Int = 0) {
        self.bytes = bytes
        self.path = path
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func require(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else {
            throw CheckpointError.truncated(path: path, what: what(), offset: offset, needed: n, available: remaining)
        }
    }

    public mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try require(MemoryLayout<T>.size, what())
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { dst in
            dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + MemoryLayout<T>.size]))
        }
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    public mutating func readFloat(_ what: @autoclosure () -> String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what()))
    }

    public mutating func readDouble(_ what: @autoclosure () -> String) throws -> Double {
        Double(bitPattern: try read(UInt64.self, what()))
    }

    public mutating func readBytes(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
        try require(n, what())
        let r = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
        offset += n
        return r
    }

    public mutating func skip(_ n: Int, _ what: @autoclosure () -> String) throws {
        try require(n, what())
        offset += n
    }
}
