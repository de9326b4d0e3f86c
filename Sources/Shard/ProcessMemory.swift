// This process's memory as Linux accounts it: peak and current resident set, and the proportional share.
import Foundation

/// RSS counts every page a process maps, shared or not; PSS divides each shared page among the
/// processes that map it, so the PSS of a node's ranks adds up to the node's real use (with
/// shared weights, one copy of the model in total). From /proc/self/status (VmHWM: the peak
/// RSS) and /proc/self/smaps_rollup (Rss, Pss); zeros where the files do not exist.
public struct ProcessMemory: Sendable, Equatable {
    public var peakResidentBytes: Int
    public var residentBytes: Int
    public var proportionalBytes: Int

    public static func current() -> ProcessMemory {
        func kilobytes(_ file: String, _ key: String) -> Int {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return 0 }
            for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
                let digits = line.dropFirst(key.count + 1).trimmingCharacters(in: .whitespaces).prefix { $0.isNumber }
                return (Int(digits) ?? 0) * 1024
            }
            return 0
        }
        return ProcessMemory(peakResidentBytes: kilobytes("/proc/self/status", "VmHWM"),
                             residentBytes: kilobytes("/proc/self/smaps_rollup", "Rss"),
                             proportionalBytes: kilobytes("/proc/self/smaps_rollup", "Pss"))
    }
}
