// One evaluation sample through the model: greedy answer or best option, and the gold answer's log-likelihood.
import Engine
import Foundation

/// What one sample gave (a row of samples.csv).
public struct ItemOutcome: Codable, Sendable, Equatable {
    public var index: Int
    public var line: Int
    /// `generate`: the first number of the completion ("" when none); `choice`: the best option.
    public var prediction: String
    /// `generate`: the gold answer's first number (its text when it has none); `choice`: the gold option.
    public var gold: String
    public var correct: Bool
    /// (1/Y)·Σ_m log P(y_m | z_m) of the gold answer, teacher-forced.
    public var logLikelihood: Double
    /// `generate`: the decoded completion, cut at its first newline.
    public var completion: String?
    /// `choice`: every option's score (sum or mean of its tokens' log P).
    public var optionScores: [Double]?

    enum CodingKeys: String, CodingKey {
        case index, line, prediction, gold, correct, logLikelihood = "log_likelihood", completion, optionScores = "option_scores"
    }
}

/// Evaluates items of one task on one model (whatever neurons are erased in it right now).
public final class ItemEvaluator {
    let model: TransformerModel
    let tokenizer: Tokenizer
    /// Tokens after which decoding stops: EOS and every token whose text holds a newline.
    let stopTokens: Set<Int>

    public init(model: TransformerModel, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
        var stop = Set<Int>()
        if let eos = tokenizer.eosTokenID { stop.insert(eos) }
        for id in 0..<min(tokenizer.vocabularySize, model.dimensions.vocabulary) where tokenizer.decode([id]).unicodeScalars.contains("\n") {
            stop.insert(id)
        }
        stopTokens = stop
    }

    /// Items decoded together by `generate` (in lockstep, one batch per step). The groups are
    /// fixed runs of the set's order, never a rank's share, so the float rounding of a batch
    /// (and so every output) does not depend on the rank count.
    public static let generateGroup = 8
    /// `choice` items whose prompts run as one batch: up to this many, and up to
    /// `choiceGroupTokens` prompt tokens (a lone longer prompt is its own group). Long prompts
    /// already make tall products; short ones gain from sharing the weights' packing.
    public static let choiceGroup = 8
    public static let choiceGroupTokens = 1024

    /// Outcomes of `items` (one group), in order: their prompts in one batched pass, then
    /// every gold answer (`generate`) or the k-th option of every item (`choice`) in one more.
    public func evaluate(_ items: [EvaluationItem], task: EvaluationTask) throws -> [ItemOutcome] {
        switch task.kind {
        case .generate:
            let prompts = try model.prefill(items.map(\.prompt), continuation: items.map { max(task.maxNewTokens, $0.gold.count) })
            let generated = try model.greedyContinuations(after: prompts, maxNewTokens: task.maxNewTokens) { stopTokens.contains($0) }
            let gold = try model.continuationLogProbabilities(items.map(\.gold), after: prompts)
            return items.indices.map { generateOutcome(items[$0], generated: generated[$0], gold: gold[$0]) }
        case .choice:
            let prompts = try model.prefill(items.map(\.prompt), continuation: items.map { $0.options.map(\.count).max() ?? 1 })
            var lp = items.map { [[Double]](repeating: [], count: $0.options.count) }
            for k in 0..<(items.map(\.options.count).max() ?? 0) {
                let having = items.indices.filter { k < items[$0].options.count }
                let scored = try model.continuationLogProbabilities(having.map { items[$0].options[k] }, after: having.map { prompts[$0] })
                for (j, i) in having.enumerated() { lp[i][k] = scored[j] }
            }
            return items.indices.map { choiceOutcome(items[$0], optionLogProbabilities: lp[$0], task: task) }
        }
    }

    /// Picks the option with the best score (sum or mean of its tokens' log P; the first on ties).
    func choiceOutcome(_ item: EvaluationItem, optionLogProbabilities: [[Double]], task: EvaluationTask) -> ItemOutcome {
        var scores: [Double] = [], goldLL = 0.0
        for (k, lp) in optionLogProbabilities.enumerated() {
            var sum = 0.0
            for v in lp { sum += v }
            scores.append(task.choiceScore == .sum ? sum : sum / Double(lp.count))
            if k == item.goldOption { goldLL = mean(lp) }
        }
        var best = 0
        for k in scores.indices where scores[k] > scores[best] { best = k }   // the first on ties
        return ItemOutcome(index: item.index, line: item.line, prediction: item.optionTexts[best].trimmingCharacters(in: .whitespaces),
                           gold: item.optionTexts[item.goldOption ?? 0].trimmingCharacters(in: .whitespaces),
                           correct: best == item.goldOption, logLikelihood: goldLL, completion: nil, optionScores: scores)
    }

    /// Grades a generated answer (cut at its first newline); `gold` is the gold answer's token log P after the same prompt.
    func generateOutcome(_ item: EvaluationItem, generated: [Int], gold: [Double]) -> ItemOutcome {
        var completion = tokenizer.decode(generated)
        // Cut at the first "\n" scalar (a Character search would miss the one inside "\r\n").
        if let nl = completion.unicodeScalars.firstIndex(of: "\n") { completion = String(completion.unicodeScalars[..<nl]) }
        return ItemOutcome(index: item.index, line: item.line, prediction: AnswerNumber.first(in: completion) ?? "",
                           gold: AnswerNumber.first(in: item.goldText) ?? AnswerNumber.trimmed(item.goldText),
                           correct: AnswerNumber.isCorrect(completion: completion, gold: item.goldText),
                           logLikelihood: mean(gold), completion: completion, optionScores: nil)
    }

    func mean(_ v: [Double]) -> Double {
        var s = 0.0
        for x in v { s += x }
        return v.isEmpty ? 0 : s / Double(v.count)
    }
}
