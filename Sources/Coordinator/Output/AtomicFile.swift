// Writing output files so that a crash never leaves a half-written file that looks complete.
import Foundation
import Shard

extension AtomicFile {
    /// `AtomicFile.write(_:to:failure:)` (Shard) with an output's error.
    public static func write(_ data: Data, to path: String) throws {
        try write(data, to: path) { OutputError.cannotWrite(path: path, reason: $0) }
    }
}

extension AtomicFile {
    /// Makes `path` a writable directory now (not after an hour of work): created if missing,
    /// refused if it is a file, probed with a small atomic write.
    public static func prepareDirectory(_ path: String) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw LocalizationError.outputNotDirectory(path: path)
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let probe = (path as NSString).appendingPathComponent(".write-test")
            try write(Data("ok\n".utf8), to: probe)
            try FileManager.default.removeItem(atPath: probe)
        } catch {
            throw OutputError.cannotWrite(path: path, reason: error.localizedDescription)
        }
    }
}

public enum OutputError: Error, LocalizedError, Equatable {
    case cannotWrite(path: String, reason: String)
    case badTensor(name: String, detail: String)

    public var errorDescription: String? {
        switch self {
        case let .cannotWrite(path, reason): return "\(path): cannot write (\(reason)); check the output directory and free space"
        case let .badTensor(name, detail): return "tensor '\(name)': \(detail)"
        }
    }
}
