// The dataset part of a run config and its samples: records → prompt/answer text → tokens.
import Foundation

/// Keys as in the run YAML's `dataset:` section.
public struct DatasetSpec: Codable, Sendable, Equatable {
    /// A .jsonl (one JSON object per line) or .csv (header row) file.
    public var path: String
    /// Prompt template over the record's fields, e.g. "Question: {question}\nAnswer:".
    public var prompt: String
    /// Answer template, e.g. " {answer_final}" (GSM8K's final answer) or " {answer}".
    public var answer: String
    /// Field → raw value → word, for classification labels, e.g. label: {"0": "negative"}.
    public var verbalizer: [String: [String: String]]
    /// Use only the first `limit` records (after `offset`).
    public var limit: Int?
    /// Skip this many records first: an evaluation set takes the records a run did not use.
    public var offset: Int
    /// How `cnl evaluate` scores the set (SPEC "Evaluating a capability"); `cnl locate` ignores it.
    public var task: EvaluationTaskKind?
    /// `choice`: the record field holding the options, one per line (CommonsenseQA's
    /// "\nA. bank\nB. library…"); without it the options are the answer field's verbalizer words.
    public var options: String?
    /// `generate`: the most tokens decoded (SPEC default 16).
    public var maxNewTokens: Int
    /// `choice`: an option's score, the sum of its tokens' log P (default) or their mean.
    public var choiceScore: ChoiceScore

    enum CodingKeys: String, CodingKey, CaseIterable {
        case path, prompt, answer, verbalizer, limit, offset, task, options
        case maxNewTokens = "max_new_tokens", choiceScore = "choice_score"
    }

    public init(path: String, prompt: String, answer: String, verbalizer: [String: [String: String]] = [:], limit: Int? = nil,
                offset: Int = 0, task: EvaluationTaskKind? = nil, options: String? = nil, maxNewTokens: Int = 16,
                choiceScore: ChoiceScore = .sum) {
        self.path = path; self.prompt = prompt; self.answer = answer; self.verbalizer = verbalizer; self.limit = limit
        self.offset = offset; self.task = task; self.options = options; self.maxNewTokens = maxNewTokens; self.choiceScore = choiceScore
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        path = try c.decode(String.self, forKey: .path)
        prompt = try c.decode(String.self, forKey: .prompt)
        answer = try c.decode(String.self, forKey: .answer)
        verbalizer = try c.decodeIfPresent([String: [String: String]].self, forKey: .verbalizer) ?? [:]
        limit = try c.decodeIfPresent(Int.self, forKey: .limit)
        offset = try c.decodeIfPresent(Int.self, forKey: .offset) ?? 0
        task = try c.decodeIfPresent(EvaluationTaskKind.self, forKey: .task)
        options = try c.decodeIfPresent(String.self, forKey: .options)
        maxNewTokens = try c.decodeIfPresent(Int.self, forKey: .maxNewTokens) ?? 16
        choiceScore = try c.decodeIfPresent(ChoiceScore.self, forKey: .choiceScore) ?? .sum
    }
}

/// SPEC's task kinds: greedy decoding with number extraction, or the best of given options.
public enum EvaluationTaskKind: String, Codable, Sendable, CaseIterable { case generate, choice }

/// How a `choice` option's token log-probabilities become its score.
public enum ChoiceScore: String, Codable, Sendable, CaseIterable { case sum, mean }

/// One sample as text, with the data file line it came from.
public struct SampleText: Sendable, Equatable {
    public var line: Int
    public var prompt: String
    public var answer: String
    public init(line: Int, prompt: String, answer: String) { self.line = line; self.prompt = prompt; self.answer = answer }
}

/// One sample as the model sees it.
public struct TokenizedSample: Sendable, Equatable {
    public var index: Int
    public var line: Int
    public var prompt: [Int]
    public var answer: [Int]
}

public enum DatasetLoader {
    /// Every record's prompt and answer text (first `limit` records).
    public static func texts(_ spec: DatasetSpec) throws -> [SampleText] {
        let promptT = try SampleTemplate(spec.prompt, key: "dataset.prompt")
        let answerT = try SampleTemplate(spec.answer, key: "dataset.answer")
        let records = try self.records(spec.path, limit: spec.limit, offset: spec.offset)
        guard !records.isEmpty else { throw DatasetError.empty(path: spec.path) }
        return try records.map { (line, r) in
            SampleText(line: line,
                       prompt: try promptT.render(r, verbalizer: spec.verbalizer, path: spec.path, line: line),
                       answer: try answerT.render(r, verbalizer: spec.verbalizer, path: spec.path, line: line))
        }
    }

    /// Tokenized samples: the prompt with the tokenizer's own special tokens (SPEC: a BOS only
    /// where its post-processor adds one), the answer without; each checked against the context.
    public static func tokenize(_ texts: [SampleText], path: String, tokenizer: Tokenizer, contextLength: Int,
                                maxAnswerTokens: Int?) throws -> [TokenizedSample] {
        try texts.enumerated().map { (i, t) in
            let p = tokenizer.encode(t.prompt)
            var a = tokenizer.encode(t.answer, addSpecialTokens: false)
            guard !p.isEmpty else { throw DatasetError.emptyPrompt(path: path, line: t.line) }
            guard !a.isEmpty else { throw DatasetError.emptyAnswer(path: path, line: t.line) }
            if let cap = maxAnswerTokens { a = Array(a.prefix(cap)) }
            // The model reads x ⊕ y_{<Y}: the last answer token is only a target.
            guard p.count + a.count - 1 <= contextLength else {
                throw DatasetError.tooLong(path: path, line: t.line, tokens: p.count + a.count - 1, context: contextLength)
            }
            return TokenizedSample(index: i, line: t.line, prompt: p, answer: a)
        }
    }

    static func records(_ path: String, limit: Int?, offset: Int = 0) throws -> [(Int, [String: String])] {
        let lower = path.lowercased()
        var out: [(Int, [String: String])]
        if lower.hasSuffix(".jsonl") || lower.hasSuffix(".json") {
            out = try JSONLines.objects(path: path).map { (line, obj) in
                (line, obj.mapValues { v -> String in (v as? String) ?? "\(v)" })
            }
        } else if lower.hasSuffix(".csv") {
            out = try CSVRecords.read(path: path).map { ($0.line, $0.fields) }
        } else {
            throw DatasetError.unknownFormat(path: path)
        }
        if offset > 0 { out = Array(out.dropFirst(offset)) }
        if let limit { out = Array(out.prefix(limit)) }
        return out
    }
}
