import Engine
import Foundation

/// What a study over located runs starts from (`cnl erase`, `cnl enhance`): the runs, the
/// evaluation sets and (for enhance) the training sets, all of one model, checked against each
/// other before anything is computed: the model file exists and is the runs' model, no two sets
/// or runs share a name (the tables name them so), the runs' scores have the model's shape, and
/// every evaluation record is held out from the runs' localization records.
struct StudyInputs {
    let runs: [LocatedRun]
    /// The model every config names (the first evaluation config's `model`).
    let modelPath: String
    let modelSHA256: String
    let model: TransformerModel
    let tokenizer: Tokenizer
    let evalSets: [EvaluationSet]
    let trainSets: [EvaluationSet]

    static func load(runs runPaths: [String], evals: [String], trains: [String] = []) throws -> StudyInputs {
        guard !runPaths.isEmpty, !evals.isEmpty else { throw OfflineError.badOption("give at least one run directory and one --eval config") }
        let runs = try runPaths.map(LocatedRun.open)
        let evalConfigs = try evals.map { ($0, try RunConfig.load(path: $0)) }
        let trainConfigs = try trains.map { ($0, try RunConfig.load(path: $0)) }
        let modelPath = evalConfigs[0].1.model
        guard FileManager.default.fileExists(atPath: modelPath) else {
            throw CheckpointError.cannotOpen(path: modelPath, reason: "no such file or directory; set 'model' in \(evalConfigs[0].0)")
        }
        var hashes: [String: String] = [:]
        func hash(_ p: String) throws -> String {
            if let h = hashes[p] { return h }
            guard FileManager.default.fileExists(atPath: p) else { throw CheckpointError.cannotOpen(path: p, reason: "no such file or directory") }
            let h = try RunReport.Fingerprints.hashPath(p); hashes[p] = h; return h
        }
        let modelSHA = try hash(modelPath)
        for run in runs { try run.checkModel(fingerprint: modelSHA, config: evalConfigs[0].0) }
        for (path, c) in evalConfigs.dropFirst() + trainConfigs where try hash(c.model) != modelSHA {
            throw EvaluationError.modelMismatch(config: path, run: runs[0].directory, configModel: try hash(c.model), runModel: modelSHA)
        }
        let names = evalConfigs.map { EvaluationSet.nameOf($0.0) }
        if let dup = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw OfflineError.badOption("two --eval configs are both named '\(dup)'; the tables name sets by their file names")
        }
        let runNames = runs.map(\.name)
        if let dup = runNames.first(where: { n in runNames.filter { $0 == n }.count > 1 }) {
            throw OfflineError.badOption("two runs are both named '\(dup)'; the tables name runs by their directory names")
        }
        let loaded = try ModelRegistry.load(path: modelPath)
        let tokenizer = try loaded.requireTokenizer()
        let d = loaded.model.dimensions
        guard runs.allSatisfy({ $0.layers == d.layers && $0.ffnWidth == d.ffnWidth }) else {
            throw OfflineError.badOption("a run's scores do not have the model's \(d.layers)×\(d.ffnWidth) neurons")
        }
        let evalSets = try evalConfigs.map { try EvaluationSet.load(configPath: $0.0, config: $0.1, tokenizer: tokenizer, contextLength: d.contextLength) }
        for run in runs { for set in evalSets { try run.checkHeldOut(set) } }
        let trainSets = try trainConfigs.map {
            try EvaluationSet.load(configPath: $0.0, config: $0.1, tokenizer: tokenizer, contextLength: d.contextLength, training: true)
        }
        return StudyInputs(runs: runs, modelPath: modelPath, modelSHA256: modelSHA, model: loaded.model, tokenizer: tokenizer,
                           evalSets: evalSets, trainSets: trainSets)
    }
}
