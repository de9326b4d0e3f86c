// Progress of a run on the root: samples done/total, samples/s, ETA; a bar on a terminal, lines in logs.
import Foundation

/// Prints to standard error. On a terminal it redraws one line with a bar; otherwise (Slurm
/// log files, pipes) it prints a plain line at most every `interval` seconds and at the end,
/// so a log shows steady progress without thousands of carriage returns.
public final class ProgressReporter {
    public let total: Int
    public let label: String
    private let interval: TimeInterval
    private let isTerminal: Bool
    private let start = Date()
    private var lastPrint = Date.distantPast
    private var lastDone = -1

    public init(total: Int, label: String = "samples", interval: TimeInterval = 30, terminal: Bool? = nil) {
        self.total = total
        self.label = label
        self.interval = interval
        isTerminal = terminal ?? (isatty(STDERR_FILENO) != 0)
    }

    public func update(done: Int) {
        guard done != lastDone else { return }
        lastDone = done
        let now = Date()
        let finished = done >= total
        if isTerminal {
            write("\r" + line(done: done, now: now, bar: true) + "\u{1B}[K" + (finished ? "\n" : ""))
        } else if finished || now.timeIntervalSince(lastPrint) >= interval {
            lastPrint = now
            write(line(done: done, now: now, bar: false) + "\n")
        }
    }

    func line(done: Int, now: Date, bar: Bool) -> String {
        let elapsed = now.timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : nil
        let percent = total > 0 ? 100 * Double(done) / Double(total) : 100
        var s = ""
        if bar {
            let width = 24
            let filled = total > 0 ? min(width, done * width / total) : width
            s += "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
        } else {
            s += "progress: "
        }
        s += "\(done)/\(total) \(label) (\(String(format: "%.1f", percent))%), \(String(format: "%.3f", rate)) \(label)/s"
        s += ", elapsed \(Self.duration(elapsed))"
        if done < total { s += ", ETA " + (eta.map(Self.duration) ?? "unknown") }
        return s
    }

    public static func duration(_ t: TimeInterval) -> String {
        let s = Int(t.rounded())
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }
}
