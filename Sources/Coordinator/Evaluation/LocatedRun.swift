// A finished `cnl locate` run as `cnl evaluate`/`cnl erase` read it: its model, its scores, its masks, its samples.
import Engine
import Foundation

public struct LocatedRun: Sendable {
    public let directory: String
    public let report: RunReport
    /// Score [L, J] (float64) from scores.safetensors.
    public let scores: [Double]
    public let layers: Int
    public let ffnWidth: Int

    /// A short name for tables: the run directory's last component.
    public var name: String { (directory as NSString).lastPathComponent }

    public static func open(_ directory: String) throws -> LocatedRun {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw EvaluationError.noRunDirectory(path: directory)
        }
        let reportPath = (directory as NSString).appendingPathComponent(RunOutputs.reportName)
        guard let data = FileManager.default.contents(atPath: reportPath) else { throw EvaluationError.unfinishedRun(path: directory) }
        let report: RunReport
        do { report = try JSONDecoder().decode(RunReport.self, from: data) } catch {
            throw OfflineError.badReport(path: reportPath, detail: "not a cnl report: \(error.localizedDescription)")
        }
        let scoresPath = (directory as NSString).appendingPathComponent("scores.safetensors")
        guard FileManager.default.fileExists(atPath: scoresPath) else { throw EvaluationError.noScores(path: directory) }
        let file = try SafetensorsFile(path: scoresPath)
        let shape = try file.entry("Score").shape
        guard shape == [report.model.layers, report.model.ffnWidth] else {
            throw EvaluationError.scoresShape(path: scoresPath, detail: "Score has shape \(shape), but the report's model has \(report.model.layers)×\(report.model.ffnWidth) neurons")
        }
        return LocatedRun(directory: directory, report: report, scores: try file.readDoubles("Score"), layers: shape[0], ffnWidth: shape[1])
    }

    /// The whole-data mask at σ with the run's own spread. Computed from Score, so a σ the run
    /// did not list works too (the run's own σ give exactly its stored masks).
    public func mask(sigma: Double) throws -> NeuronMask {
        guard sigma > 0 && sigma.isFinite else { throw EvaluationError.sigma(value: sigma) }
        return NeuronMask(scores: scores, layers: layers, ffnWidth: ffnWidth, sigma: sigma, spread: report.config.spread)
    }

    /// The records the run localized on (line and record fingerprint), read again from its data
    /// file; the file must still be the one the run read (same SHA-256).
    public func localizationRecords() throws -> [(line: Int, record: String)] {
        let path = report.config.dataset.path
        guard FileManager.default.fileExists(atPath: path), try RunReport.Fingerprints.hashPath(path) == report.fingerprints.data else {
            throw OfflineError.badReport(path: path, detail: "the data file of run \(directory) is missing or changed since the run, so its samples cannot be checked against the evaluation set")
        }
        return try DatasetLoader.records(path, limit: report.config.dataset.limit, offset: report.config.dataset.offset)
            .map { (line: $0.0, record: RecordFingerprint.of($0.1)) }
    }

    /// Refuses an evaluation set that shares a record with the run's localization samples,
    /// naming the first shared record (in the evaluation set's order).
    public func checkHeldOut(_ set: EvaluationSet) throws {
        let mine = try localizationRecords()
        var lineOf: [String: Int] = [:]
        for r in mine where lineOf[r.record] == nil { lineOf[r.record] = r.line }
        if let shared = set.items.first(where: { lineOf[$0.record] != nil }) {
            throw EvaluationError.overlap(config: set.configPath, path: set.config.dataset.path, line: shared.line, run: directory,
                                          runPath: report.config.dataset.path, runLine: lineOf[shared.record]!)
        }
    }

    /// Refuses a model other than the run's: neuron indices mean nothing elsewhere.
    public func checkModel(fingerprint: String, config: String) throws {
        guard fingerprint == report.fingerprints.model else {
            throw EvaluationError.modelMismatch(config: config, run: directory, configModel: fingerprint, runModel: report.fingerprints.model)
        }
    }
}
