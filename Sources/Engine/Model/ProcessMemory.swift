// Resident-memory readings of this process (Linux /proc), for load-budget checks and reports.
import Foundation

public enum ProcessMemory {
    /// Peak resident set size (VmHWM) in bytes, or nil where /proc is unavailable.
    public static var peakResident: Int? { field("VmHWM:") }
    /// Current resident set size (VmRSS) in bytes.
    public static var resident: Int? { field("VmRSS:") }

    private static func field(_ name: String) -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix(name) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }
}
