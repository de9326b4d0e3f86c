import Foundation
import Shard

/// One job per output directory, for every command that writes one (`cnl locate`, `cnl enhance`,
/// `cnl erase`, `cnl evaluate`):
/// the directory's lock is taken before anything in it is read or written, so a second job into
/// the same directory (a double submission) is refused at once, naming the job that holds it.
enum OutputDirectoryLock {
    /// `command` names the caller in the log lines about a fallback lock file or a stale lock.
    static func acquire(_ path: String, command: String, log: (String) -> Void) throws -> RunDirectoryLock {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
            throw LocalizationError.outputNotDirectory(path: path)
        }
        let (mechanism, lease) = try RunDirectoryLock.settings()
        let lock = try RunDirectoryLock.acquire(directory: path, mechanism: mechanism, lease: lease)
        if let reason = lock.flockUnsupported {
            log("\(command): flock(2) is not supported for \(lock.path) (\(reason)); using an exclusive lock file with a \(Int(lease)) s lease instead")
        }
        if let (previous, reason) = lock.takenOver {
            log("\(command): took over the stale lock \(lock.path) of \(previous?.description ?? "an unnamed holder") (\(reason))")
        }
        return lock
    }
}
