// An evaluation set: the records of a dataset config turned into prompts, gold answers and options.
import Engine
import Foundation
import Shard

/// One sample to evaluate, as the model sees it.
public struct EvaluationItem: Codable, Sendable, Equatable {
    /// 0-based position in the set.
    public var index: Int
    /// The data file line (1-based; a CSV record's first line).
    public var line: Int
    /// SHA-256 of the record's fields (template-independent): the held-out check compares these.
    public var record: String
    public var prompt: [Int]
    /// The gold answer's tokens and text (the answer template filled from the record).
    public var gold: [Int]
    public var goldText: String
    /// `choice`: every option's tokens and text, and which one is the gold answer.
    public var options: [[Int]]
    public var optionTexts: [String]
    public var goldOption: Int?
}

/// How a set is scored, shared by every rank (part of the broadcast plan).
public struct EvaluationTask: Codable, Sendable, Equatable {
    public var kind: EvaluationTaskKind
    public var maxNewTokens: Int
    public var choiceScore: ChoiceScore
}

public struct EvaluationSet: Sendable {
    public let configPath: String
    public let config: RunConfig
    public let task: EvaluationTask
    public let items: [EvaluationItem]

    /// A short name for tables: the config file's name without its extension.
    public var name: String { Self.nameOf(configPath) }

    /// Reads, renders and tokenizes the config's records (after `offset`, at most `limit`) the way
    /// `cnl locate` does (prompt with the tokenizer's special tokens, answers without). A
    /// `training` set (cnl enhance's --train) needs no task: its gold answers are the targets.
    public static func load(configPath: String, config: RunConfig, tokenizer: Tokenizer, contextLength: Int,
                            training: Bool = false) throws -> EvaluationSet {
        let spec = config.dataset
        guard let kind = spec.task ?? (training ? .generate : nil) else { throw EvaluationError.noTask(config: configPath) }
        guard FileManager.default.fileExists(atPath: spec.path) else {
            throw DataFileError.unreadable(path: spec.path, reason: "no such file; set 'dataset.path' in \(configPath)")
        }
        let promptT = try SampleTemplate(spec.prompt, key: "dataset.prompt")
        let answerT = try SampleTemplate(spec.answer, key: "dataset.answer")
        var optionField: String?
        if kind == .choice {
            let fields = Set(answerT.fields)
            guard fields.count == 1, let f = fields.first else {
                throw EvaluationError.choiceAnswerTemplate(config: configPath, template: spec.answer)
            }
            optionField = f
            if spec.options == nil && spec.verbalizer[f] == nil {
                throw EvaluationError.choiceWithoutOptions(config: configPath, field: f)
            }
        }
        let records = try DatasetLoader.records(spec.path, limit: spec.limit, offset: spec.offset)
        guard !records.isEmpty else { throw DatasetError.empty(path: spec.path) }
        var items: [EvaluationItem] = []
        for (i, (line, r)) in records.enumerated() {
            let promptText = try promptT.render(r, verbalizer: spec.verbalizer, path: spec.path, line: line)
            let goldText = try answerT.render(r, verbalizer: spec.verbalizer, path: spec.path, line: line)
            let prompt = tokenizer.encode(promptText)
            let gold = tokenizer.encode(goldText, addSpecialTokens: false)
            guard !prompt.isEmpty else { throw DatasetError.emptyPrompt(path: spec.path, line: line) }
            guard !gold.isEmpty else { throw DatasetError.emptyAnswer(path: spec.path, line: line) }
            var optionTexts: [String] = [], goldOption: Int?
            if let f = optionField {
                if let field = spec.options {
                    guard let raw = SampleTemplate.value(field, in: r) else {
                        throw DatasetError.missingField(path: spec.path, line: line, field: field)
                    }
                    let values = raw.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                    guard !values.isEmpty else { throw EvaluationError.noOptions(path: spec.path, line: line, field: field) }
                    var record = r
                    var plain = spec.verbalizer
                    plain[f] = nil
                    optionTexts = try values.map { v in record[f] = v; return try answerT.render(record, verbalizer: plain, path: spec.path, line: line) }
                } else if let words = spec.verbalizer[f] {
                    // The verbalizer's raw values in sorted order (BoolQ: False, True → " no", " yes").
                    var record = r
                    optionTexts = try words.keys.sorted().map { k in
                        record[f] = k
                        return try answerT.render(record, verbalizer: spec.verbalizer, path: spec.path, line: line)
                    }
                }
                // The exact text, else the one option equal up to surrounding whitespace and final
                // punctuation (CommonsenseQA's line 117 lists "E. sail boat?" for the answer "E. sail boat").
                goldOption = optionTexts.firstIndex(of: goldText)
                if goldOption == nil {
                    let loose = optionTexts.indices.filter { Self.loose(optionTexts[$0]) == Self.loose(goldText) }
                    if loose.count == 1 { goldOption = loose[0] }
                }
                guard goldOption != nil else {
                    throw EvaluationError.goldNotAnOption(path: spec.path, line: line, gold: goldText, options: optionTexts)
                }
            }
            let options = optionTexts.map { tokenizer.encode($0, addSpecialTokens: false) }
            if let empty = options.firstIndex(where: \.isEmpty) {
                throw EvaluationError.emptyOption(path: spec.path, line: line, option: optionTexts[empty])
            }
            let longest = max(gold.count, options.map(\.count).max() ?? 0, kind == .generate && !training ? spec.maxNewTokens : 0)
            guard prompt.count + longest <= contextLength else {
                throw DatasetError.tooLong(path: spec.path, line: line, tokens: prompt.count + longest, context: contextLength)
            }
            items.append(EvaluationItem(index: i, line: line, record: RecordFingerprint.of(r), prompt: prompt, gold: gold,
                                        goldText: goldText, options: options, optionTexts: optionTexts, goldOption: goldOption))
        }
        return EvaluationSet(configPath: configPath, config: config,
                             task: EvaluationTask(kind: kind, maxNewTokens: spec.maxNewTokens, choiceScore: spec.choiceScore), items: items)
    }

    static func loose(_ s: String) -> String {
        var t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        while let last = t.last, ".?!,;:".contains(last) { t.removeLast() }
        return t.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Estimated cost of an item (token positions run through the model), for balancing ranks.
    static func cost(_ item: EvaluationItem, task: EvaluationTask) -> Double {
        let continuation = task.kind == .generate ? Double(task.maxNewTokens + item.gold.count) : Double(item.options.map(\.count).reduce(0, +))
        return Double(item.prompt.count) + 4 * continuation    // a single-token step costs ~4 prompt positions (sgemv)
    }
}

/// A record's identity independent of templates: the SHA-256 of its fields in key order.
public enum RecordFingerprint {
    public static func of(_ record: [String: String]) -> String {
        var h = SHA256()
        for k in record.keys.sorted() { h.update("\(k)\u{1F}\(record[k]!)\u{1E}") }
        return h.finalize().prefix(16).map { String(format: "%02x", $0) }.joined()
    }
}

public enum EvaluationError: Error, LocalizedError, Equatable {
    case noTask(config: String)
    case choiceAnswerTemplate(config: String, template: String)
    case choiceWithoutOptions(config: String, field: String)
    case noOptions(path: String, line: Int, field: String)
    case emptyOption(path: String, line: Int, option: String)
    case goldNotAnOption(path: String, line: Int, gold: String, options: [String])
    case noRunDirectory(path: String)
    case unfinishedRun(path: String)
    case noScores(path: String)
    case scoresShape(path: String, detail: String)
    case modelMismatch(config: String, run: String, configModel: String, runModel: String)
    case overlap(config: String, path: String, line: Int, run: String, runPath: String, runLine: Int)
    case sigma(value: Double)
    case tooManyNeurons(asked: Int, neurons: Int)
    case tooFewSamples(config: String, samples: Int, ranks: Int)

    public var errorDescription: String? {
        switch self {
        case let .noTask(config):
            return "\(config): 'dataset.task' is missing; set it to generate or choice to evaluate this set"
        case let .choiceAnswerTemplate(config, template):
            return "\(config): a choice task's answer template must have exactly one field (the one the options replace), got \(String(reflecting: template))"
        case let .choiceWithoutOptions(config, field):
            return "\(config): task choice has no options: set 'dataset.options' to the field that lists them, or a 'dataset.verbalizer' for '\(field)'"
        case let .noOptions(path, line, field):
            return "\(path):\(line): field '\(field)' lists no options (one per line)"
        case let .emptyOption(path, line, option):
            return "\(path):\(line): option \(String(reflecting: option)) tokenizes to no tokens"
        case let .goldNotAnOption(path, line, gold, options):
            return "\(path):\(line): the gold answer \(String(reflecting: gold)) is not one of the options \(options.map { String(reflecting: $0) }.joined(separator: ", "))"
        case let .noRunDirectory(path):
            return "\(path): no such run directory; pass the output directory of a finished cnl locate run"
        case let .unfinishedRun(path):
            return "\(path): holds no finished run (no report.json); finish it with cnl locate first"
        case let .noScores(path):
            return "\(path): the run's scores are missing; the masks are computed from Score, so run cnl locate again (with --force)"
        case let .scoresShape(path, detail):
            return "\(path): \(detail)"
        case let .modelMismatch(config, run, configModel, runModel):
            return "\(config): its model (sha256 \(configModel.prefix(12))…) is not the model of run \(run) (sha256 \(runModel.prefix(12))…); neuron indices only mean something in the model they were located in"
        case let .overlap(config, path, line, run, runPath, runLine):
            return "\(config): evaluation record \(path):\(line) is localization sample \(runPath):\(runLine) of run \(run); evaluate on held-out records (raise 'dataset.offset' past the run's records)"
        case let .sigma(value):
            return "σ must be a positive number, got \(value)"
        case let .tooManyNeurons(asked, neurons):
            return "cannot erase \(asked) random neurons: the model has \(neurons)"
        case let .tooFewSamples(config, samples, ranks):
            return "\(config): \(samples) evaluation samples for \(ranks) ranks; use at most \(samples) ranks or a larger 'dataset.limit'"
        }
    }
}
