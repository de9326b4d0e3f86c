// `cnl converge` and `cnl rescore`: Appendix E curves and new σ masks from a finished run, no recomputation.
import ArgumentParser
import Coordinator
import Foundation

/// Comma-separated numbers of an option, with the option named in the error.
func parseList<T>(_ text: String, option: String, _ make: (String) -> T?) throws -> [T] {
    try text.split(separator: ",").map { p in
        let s = p.trimmingCharacters(in: .whitespaces)
        guard let v = make(s) else { throw ValidationError("\(option): '\(s)' is not a valid number") }
        return v
    }
}

struct Converge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Appendix E convergence curves from a run's per-sample store (cnl locate --save-per-sample).",
        discussion: """
        For the run's own a/b split (its seed) and, with --seeds K, K − 1 more splits (seed+1, …), \
        locates the first n samples of a and of b for every n of the grid and compares them. \
        Writes RUN_DIR/converge/{curves.csv, summary.csv, convergence.svg} (mean ± std bands when K > 1). \
        With an f64 store, the run's own split reproduces report.json's in-run curve exactly.
        """)

    @Argument(help: "A finished run directory.")
    var directory: String

    @Option(help: "Sizes n, comma-separated (default: the run's grid).")
    var grid: String?

    @Option(help: "Number of a/b splits: the run's own and K − 1 re-draws.")
    var seeds = 1

    @Option(help: "σ values, comma-separated (default: the run's).")
    var sigma: String?

    func run() throws {
        try runReportingErrors {
            let g = try grid.map { try parseList($0, option: "--grid") { Int($0) } }
            let s = try sigma.map { try parseList($0, option: "--sigma") { Double($0) } }
            let log: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            let r = try OfflineAnalysis.converge(run: directory, grid: g, seeds: seeds, sigmas: s, log: log)
            print("sigma      n  draws  overlap (mean ± std)   IoU (mean ± std)")
            for p in r.summary {
                func show(_ st: OfflineAnalysis.SummaryPoint.Stats) -> String {
                    guard let m = st.mean, let d = st.std else { return "undefined (empty mask)" }
                    return String(format: "%.4f ± %.4f", m, d) + (st.defined < p.draws ? " (\(st.defined) defined)" : "")
                }
                print(String(format: "%5@ %6d %6d  ", String(format: "%g", p.sigma), p.n, p.draws) + show(p.overlap).padding(toLength: 23, withPad: " ", startingAt: 0) + show(p.iou))
            }
            print("wrote \(r.outputDirectory)/{curves.csv, summary.csv, convergence.svg}")
        }
    }
}

struct Rescore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-apply Eq. 8 masks with other σ (or spread) to a run's scores, and report Eq. 9; no recomputation.",
        discussion: "Writes RUN_DIR/rescore-<spread>-sigma<σ…>.json (metrics) and .safetensors (masks, uint8 [L, J]).")

    @Argument(help: "A finished run directory.")
    var directory: String

    @Option(help: "σ values, comma-separated.")
    var sigma: String

    @Option(help: "Spread: std or var.")
    var spread = "std"

    func run() throws {
        try runReportingErrors {
            let s = try parseList(sigma, option: "--sigma") { Double($0) }
            guard let sp = Spread(rawValue: spread) else { throw ValidationError("--spread must be std or var, got '\(spread)'") }
            let r = try OfflineAnalysis.rescore(run: directory, sigmas: s, spread: sp)
            for x in r.results {
                print(String(format: "σ = %-4g whole %5d (%.4f%%)   a %5d   b %5d   overlap %@   IoU %@", x.sigma, x.whole.neurons,
                             100 * x.whole.fraction, x.a.neurons, x.b.neurons, OverlapMetrics.describe(x.agreement.overlap),
                             OverlapMetrics.describe(x.agreement.iou)))
            }
            print("wrote \(r.outputPath).json and .safetensors")
        }
    }
}
