// Memory readings of this process (Linux /proc), for load-budget checks and reports.
import Foundation

/// RSS counts every page a process maps, shared or not; PSS divides each shared page among the
/// processes that map it, so the PSS of a node's ranks adds up to the node's real use (with
/// shared weights, one copy of the model in total). nil where the /proc files do not exist.
public enum ProcessMemory {
    /// Peak resident set size (VmHWM) in bytes.
    public static var peakResident: Int? { field("VmHWM:", in: "/proc/self/status") }
    /// Current resident set size (VmRSS) in bytes.
    public static var resident: Int? { field("VmRSS:", in: "/proc/self/status") }
    /// Current proportional set size (Pss of /proc/self/smaps_rollup) in bytes.
    public static var proportional: Int? { field("Pss:", in: "/proc/self/smaps_rollup") }

    private static func field(_ name: String, in file: String) -> Int? {
        guard let s = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix(name) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}
