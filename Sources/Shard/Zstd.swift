// zstd compression of checkpoint payloads and per-sample score frames (libzstd, one call each way).
import CZstd
import Foundation

public enum Zstd {
    public enum Failure: Error, LocalizedError, Equatable {
        case compress(String)
        case decompress(String)
        public var errorDescription: String? {
            switch self {
            case let .compress(m): return "zstd compression failed: \(m)"
            case let .decompress(m): return "zstd data is corrupt: \(m)"
            }
        }
    }

    /// One zstd frame holding `data` (level 3: zstd's default, fast enough to run every sample).
    public static func compress(_ data: Data, level: Int32 = 3) throws -> Data {
        let bound = ZSTD_compressBound(data.count)
        var out = Data(count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            data.withUnsafeBytes { src in ZSTD_compress(dst.baseAddress, bound, src.baseAddress, data.count, level) }
        }
        if ZSTD_isError(n) != 0 { throw Failure.compress(String(cString: ZSTD_getErrorName(n))) }
        out.count = n
        return out
    }

    /// The content of one frame, which must decompress to exactly `expectedSize` bytes.
    public static func decompress(_ frame: Data, expectedSize: Int) throws -> Data {
        var out = Data(count: expectedSize)
        let n = out.withUnsafeMutableBytes { dst in
            frame.withUnsafeBytes { src in ZSTD_decompress(dst.baseAddress, expectedSize, src.baseAddress, frame.count) }
        }
        if ZSTD_isError(n) != 0 { throw Failure.decompress(String(cString: ZSTD_getErrorName(n))) }
        guard n == expectedSize else { throw Failure.decompress("\(n) bytes, expected \(expectedSize)") }
        return out
    }
}
