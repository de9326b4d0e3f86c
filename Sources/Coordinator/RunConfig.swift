// The run config (configs/*.yaml): keys mirror the YAML; defaults and checks in one init(from:).
import Foundation
import Yams

public struct RunConfig: Codable, Sendable, Equatable {
    /// A .gguf file or an HF model directory.
    public var model: String
    public var dataset: DatasetSpec
    /// Seed of the a/b split (SPEC: the split depends on the seed and the dataset only).
    public var seed: UInt64
    /// σ of Eq. 8; several values give several masks from one run.
    public var sigmas: [Double]
    public var spread: Spread
    /// S of Eq. 7.
    public var steps: Int
    public var normalization: AttributionOptions.Normalization
    /// K of `normalization: gauss-legendre` (SPEC "Quadrature").
    public var points: Int?
    public var maxAnswerTokens: Int?
    public var rowBudget: Int
    /// The run directory.
    public var output: String
    /// Appendix E sizes n; default 25, 50, 100, … up to |D|/2.
    public var convergenceGrid: [Int]?
    /// Pipeline stages per data-parallel group (1: every rank holds the whole model).
    public var stages: Int
    /// What the stages' layer ranges even out: row work (default) or weights per rank.
    public var stageBalance: StageBalance
    /// How samples reach the ranks: a cost-balanced plan made up front (default), or one at a
    /// time to whichever rank asks first (stragglers take fewer). The scores do not depend on it.
    public var assignment: SampleAssignment

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, dataset, seed, sigmas = "sigma", spread, steps, normalization, points
        case maxAnswerTokens = "max_answer_tokens", rowBudget = "row_budget", output
        case convergenceGrid = "convergence_grid", stages, stageBalance = "stage_balance", assignment
    }

    public var attributionOptions: AttributionOptions {
        AttributionOptions(steps: steps, normalization: normalization, maxAnswerTokens: maxAnswerTokens, rowBudget: rowBudget, points: points)
    }

    /// Rows per (answer token, layer): S + 1, or K for Gauss–Legendre.
    public var pointsPerLayer: Int {
        attributionOptions.quadrature().count
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        dataset = try c.decode(DatasetSpec.self, forKey: .dataset)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
        if let one = try? c.decode(Double.self, forKey: .sigmas) {
            sigmas = [one]
        } else {
            sigmas = try c.decodeIfPresent([Double].self, forKey: .sigmas) ?? [6]
        }
        /// A key with a fixed set of words: the error lists them.
        func choice<T: RawRepresentable & CaseIterable>(_ key: CodingKeys, default value: T) throws -> T where T.RawValue == String {
            guard let raw = try c.decodeIfPresent(String.self, forKey: key) else { return value }
            guard let v = T(rawValue: raw) else {
                throw RunConfigError.invalid(key: key.stringValue, detail: "'\(raw)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return v
        }
        spread = try choice(.spread, default: Spread.std)
        steps = try c.decodeIfPresent(Int.self, forKey: .steps) ?? 19
        normalization = try c.decodeIfPresent(AttributionOptions.Normalization.self, forKey: .normalization) ?? .paper
        points = try c.decodeIfPresent(Int.self, forKey: .points)
        maxAnswerTokens = try c.decodeIfPresent(Int.self, forKey: .maxAnswerTokens)
        rowBudget = try c.decodeIfPresent(Int.self, forKey: .rowBudget) ?? 600
        output = try c.decode(String.self, forKey: .output)
        convergenceGrid = try c.decodeIfPresent([Int].self, forKey: .convergenceGrid)
        stages = try c.decodeIfPresent(Int.self, forKey: .stages) ?? 1
        stageBalance = try choice(.stageBalance, default: StageBalance.work)
        assignment = try choice(.assignment, default: SampleAssignment.static)
        try validate()
    }

    /// Cross-field checks; each failure names the key and the fix.
    public func validate() throws {
        func bad(_ key: String, _ detail: String) -> RunConfigError { .invalid(key: key, detail: detail) }
        guard !sigmas.isEmpty else { throw bad("sigma", "give at least one σ, e.g. 6") }
        for s in sigmas where !(s > 0 && s.isFinite) { throw bad("sigma", "σ must be a positive number, got \(s)") }
        guard steps >= 1 && steps <= 10_000 else { throw bad("steps", "must be between 1 and 10000, got \(steps)") }
        guard rowBudget >= 1 else { throw bad("row_budget", "must be at least 1, got \(rowBudget)") }
        guard stages >= 1 && stages <= 4096 else { throw bad("stages", "must be between 1 and 4096 (the ranks of one pipeline), got \(stages)") }
        if assignment == .dynamic && stages > 1 {
            throw bad("assignment", "dynamic assignment does not work with pipeline stages (stages is \(stages)): a group's stages must see the same samples in the same order; use assignment static with stages, or stages 1")
        }
        if normalization == .gaussLegendre {
            guard let k = points, (1...64).contains(k) else {
                throw bad("points", "normalization gauss-legendre needs 'points' (K nodes, 1 to 64, e.g. 6), got \(points.map(String.init) ?? "none")")
            }
        } else if let k = points {
            throw bad("points", "\(k) is a Gauss–Legendre node count; set 'normalization: gauss-legendre' or remove 'points'")
        }
        if let m = maxAnswerTokens, m < 1 { throw bad("max_answer_tokens", "must be at least 1, got \(m)") }
        if let l = dataset.limit, l < 1 { throw bad("dataset.limit", "must be at least 1, got \(l)") }
        guard dataset.offset >= 0 else { throw bad("dataset.offset", "must be 0 or more, got \(dataset.offset)") }
        guard dataset.maxNewTokens >= 1 && dataset.maxNewTokens <= 4096 else {
            throw bad("dataset.max_new_tokens", "must be between 1 and 4096, got \(dataset.maxNewTokens)")
        }
        if let g = convergenceGrid, g.isEmpty || g.contains(where: { $0 < 1 }) || g != g.sorted() {
            throw bad("convergence_grid", "must be increasing positive sizes, got \(g)")
        }
        guard !output.isEmpty else { throw bad("output", "must be a directory path") }
        _ = try SampleTemplate(dataset.prompt, key: "dataset.prompt")
        _ = try SampleTemplate(dataset.answer, key: "dataset.answer")
    }

    /// Reads a YAML run config. Unknown keys are refused (a typo must not silently become a
    /// default); relative model, data and output paths are kept as written (relative to the
    /// working directory, as on the command line).
    public static func load(path: String) throws -> RunConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RunConfigError.unreadable(path: path)
        }
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch {
            throw RunConfigError.syntax(path: path, detail: "\(error)".split(whereSeparator: \.isNewline).joined(separator: " "))
        }
        guard let root = node?.mapping else { throw RunConfigError.syntax(path: path, detail: "the file is not a YAML mapping of keys") }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        for key in root.keys.compactMap(\.string) where !known.contains(key) {
            throw RunConfigError.unknownKey(path: path, key: key, known: known.sorted())
        }
        if let ds = root["dataset"]?.mapping {
            let dsKnown = Set(DatasetSpec.CodingKeys.allCases.map(\.rawValue))
            for key in ds.keys.compactMap(\.string) where !dsKnown.contains(key) {
                throw RunConfigError.unknownKey(path: path, key: "dataset.\(key)", known: dsKnown.sorted().map { "dataset.\($0)" })
            }
        }
        do {
            return try YAMLDecoder().decode(RunConfig.self, from: text)
        } catch {
            throw explain(error, path: path)
        }
    }

    /// The error a user can act on: Yams wraps what init(from:) throws in a DecodingError
    /// ("not valid YAML"), so the cause is unwrapped first; messages are kept to one line.
    static func explain(_ error: Error, path: String) -> RunConfigError {
        func oneLine(_ s: String) -> String { s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ") }
        func key(_ path: [CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case let e as RunConfigError:
            return .inFile(path: path, error: e)
        case let e as DatasetError:
            return .inFile(path: path, error: .invalid(key: "dataset", detail: oneLine(e.localizedDescription)))
        case let DecodingError.keyNotFound(k, ctx):
            return .missingKey(path: path, key: key(ctx.codingPath + [k]))
        case let DecodingError.typeMismatch(_, ctx), let DecodingError.valueNotFound(_, ctx):
            return .inFile(path: path, error: .invalid(key: key(ctx.codingPath), detail: oneLine(ctx.debugDescription)))
        case let DecodingError.dataCorrupted(ctx):
            if let inner = ctx.underlyingError { return explain(inner, path: path) }
            return .inFile(path: path, error: .invalid(key: key(ctx.codingPath), detail: oneLine(ctx.debugDescription)))
        default:
            return .syntax(path: path, detail: oneLine("\(error)"))
        }
    }
}

public indirect enum RunConfigError: Error, LocalizedError, Equatable {
    case unreadable(path: String)
    case syntax(path: String, detail: String)
    case unknownKey(path: String, key: String, known: [String])
    case missingKey(path: String, key: String)
    case invalid(key: String, detail: String)
    case inFile(path: String, error: RunConfigError)
    case afterOverrides(error: RunConfigError)

    public var errorDescription: String? {
        switch self {
        case let .unreadable(path): return "\(path): cannot read the run config"
        case let .syntax(path, detail): return "\(path): not valid YAML: \(detail)"
        case let .unknownKey(path, key, known): return "\(path): unknown key '\(key)' (known: \(known.joined(separator: ", ")))"
        case let .missingKey(path, key): return "\(path): required key '\(key)' is missing"
        case let .invalid(key, detail): return "config '\(key)': \(detail)"
        case let .inFile(path, error): return "\(path): \(error.localizedDescription)"
        case let .afterOverrides(error): return "with the command-line options: \(error.localizedDescription)"
        }
    }
}

/// Command-line values that replace the config file's (nil: keep the file's).
public struct RunConfigOverrides: Sendable, Equatable {
    public var model: String?
    public var dataPath: String?
    public var limit: Int?
    public var seed: UInt64?
    public var sigmas: [Double]?
    public var spread: Spread?
    public var steps: Int?
    public var normalization: AttributionOptions.Normalization?
    public var points: Int?
    public var maxAnswerTokens: Int?
    public var rowBudget: Int?
    public var output: String?
    public var convergenceGrid: [Int]?
    public var stages: Int?
    public var stageBalance: StageBalance?
    public var assignment: SampleAssignment?

    public init() {}

    /// The config with these values applied, checked again as a whole.
    public func applied(to config: RunConfig) throws -> RunConfig {
        var c = config
        if let model { c.model = model }
        if let dataPath { c.dataset.path = dataPath }
        if let limit { c.dataset.limit = limit }
        if let seed { c.seed = seed }
        if let sigmas { c.sigmas = sigmas }
        if let spread { c.spread = spread }
        if let steps { c.steps = steps }
        if let normalization { c.normalization = normalization }
        if let points { c.points = points }
        if let maxAnswerTokens { c.maxAnswerTokens = maxAnswerTokens }
        if let rowBudget { c.rowBudget = rowBudget }
        if let output { c.output = output }
        if let convergenceGrid { c.convergenceGrid = convergenceGrid }
        if let stages { c.stages = stages }
        if let stageBalance { c.stageBalance = stageBalance }
        if let assignment { c.assignment = assignment }
        do { try c.validate() } catch let e as RunConfigError {
            throw RunConfigError.afterOverrides(error: e)
        }
        return c
    }
}

/// How samples reach the ranks (config key `assignment`, `--assignment`).
public enum SampleAssignment: String, Sendable, Equatable, Codable, CaseIterable {
    /// Longest-processing-time-first over estimated costs, made on the root before any rank starts.
    case `static`
    /// One queue, costliest first; each rank asks the root for its next sample as it finishes one.
    case dynamic
}
