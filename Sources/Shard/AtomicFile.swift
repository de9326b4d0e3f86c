// Writing a file so that a crash never leaves a half-written file under its real name.
import Foundation

/// The one atomic write of the project: checkpoints (here) and every output (Coordinator's
/// extension, which maps failures to OutputError) go through it.
public enum AtomicFile {
    /// Where `path` is written before its rename: a hidden name in the same directory (same file
    /// system, so the rename is atomic), with the writer's pid, so two writers never collide.
    public static func temporaryPath(for path: String) -> String {
        let url = URL(fileURLWithPath: path)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
    }

    /// Writes `data` to the temporary name, fsyncs it (the new name must never point at bytes
    /// still in flight), then renames it over `path`. On failure the temporary file is removed
    /// and `failure(reason)` is thrown; `path` keeps its previous contents.
    public static func write(_ data: Data, to path: String, failure: (String) -> Error) throws {
        let tmp = temporaryPath(for: path)
        guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
            throw failure("cannot create \(tmp): \(String(cString: strerror(errno)))")
        }
        do {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
            try h.write(contentsOf: data)
            try h.synchronize()
            try h.close()
        } catch {
            unlink(tmp)
            throw failure(error.localizedDescription)
        }
        if rename(tmp, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw failure(reason)
        }
    }
}
