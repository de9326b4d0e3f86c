// report.json of a run: the config it ran, what it ran on, its numbers and its timings.
import Engine
import Foundation
import Shard

public struct RunReport: Codable, Sendable {
    public struct Fingerprints: Codable, Sendable, Equatable {
        /// SHA-256 of the model file (a directory: of its files' names and bytes, in name order).
        public var model: String
        /// SHA-256 of the data file's bytes.
        public var data: String
        /// SHA-256 of the tokenized samples actually attributed (prompt and answer ids).
        public var samples: String

        init(modelPath: String, dataPath: String, samples: [TokenizedSample]) throws {
            model = try Self.hashPath(modelPath)
            data = try SHA256.hex(fileAt: dataPath)
            var h = SHA256()
            for s in samples {
                h.update("\(s.index):\(s.prompt.map(String.init).joined(separator: ","))|\(s.answer.map(String.init).joined(separator: ","))\n")
            }
            self.samples = h.finalize().map { String(format: "%02x", $0) }.joined()
        }

        static func hashPath(_ path: String) throws -> String {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
                return try SHA256.hex(fileAt: path)
            }
            var h = SHA256()
            for name in try FileManager.default.contentsOfDirectory(atPath: path).sorted() where !name.hasPrefix(".") {
                let file = (path as NSString).appendingPathComponent(name)
                h.update("\(name)\n\(try SHA256.hex(fileAt: file))\n")
            }
            return h.finalize().map { String(format: "%02x", $0) }.joined()
        }
    }

    public struct ModelInfo: Codable, Sendable {
        public var path: String
        public var architecture: String
        public var layers: Int
        public var ffnWidth: Int
        public var neurons: Int
        enum CodingKeys: String, CodingKey { case path, architecture, layers, ffnWidth = "ffn_width", neurons }
    }

    public struct DataInfo: Codable, Sendable {
        public struct Range: Codable, Sendable { public var min: Int; public var mean: Double; public var max: Int }
        public var path: String
        public var samples: Int
        public var sizeA: Int
        public var sizeB: Int
        public var promptTokens: Range
        public var answerTokens: Range
        enum CodingKeys: String, CodingKey { case path, samples, sizeA = "size_a", sizeB = "size_b", promptTokens = "prompt_tokens", answerTokens = "answer_tokens" }
    }

    public struct Timings: Codable, Sendable {
        public struct Rank: Codable, Sendable {
            public var rank: Int
            public var samples: Int
            public var answerTokens: Int
            public var rows: Int
            public var flops: Double
            public var seconds: Double
            public var estimatedCost: Double
            public var checkpointsWritten: Int
            enum CodingKeys: String, CodingKey {
                case rank, samples, answerTokens = "answer_tokens", rows, flops, seconds, estimatedCost = "estimated_cost"
                case checkpointsWritten = "checkpoints_written"
            }
        }
        public var totalSeconds: Double
        public var planSeconds: Double
        public var attributionSeconds: Double
        public var reduceSeconds: Double
        public var samplesPerSecond: Double
        public var perRank: [Rank]
        enum CodingKeys: String, CodingKey {
            case totalSeconds = "total_seconds", planSeconds = "plan_seconds", attributionSeconds = "attribution_seconds"
            case reduceSeconds = "reduce_seconds", samplesPerSecond = "samples_per_second", perRank = "per_rank"
        }
    }

    public var cnlReport: Int = 1
    public var created: String
    public var configFile: String
    public var config: RunConfig
    public var fingerprints: Fingerprints
    public var model: ModelInfo
    public var data: DataInfo
    public var grid: [Int]
    /// Per σ: masks of the whole data and of a and b, and Eq. 9 between a and b.
    public var results: [SigmaResult]
    public var convergence: [ConvergencePoint]
    public var ranks: Int
    /// Threads per rank (workers over row batches, each with one BLAS thread).
    public var blasThreadsPerRank: Int
    public var timings: Timings
    /// Which job of the run this is (0: no resume) and how many samples came from checkpoints.
    public var job: Int
    public var samplesFromCheckpoints: Int
    public var perSampleStore: PerSampleIndex.Summary?
    /// Pipeline stages per group (1: none); with stages, each stage's layers and idle time.
    public var stages: Int = 1
    public var pipeline: Pipeline?
    /// Where every rank ran, what it held and how much memory it used, and each node's total.
    public var placement: Placement?

    public struct Placement: Codable, Sendable {
        /// One world rank: its group and stage (0 of 1 without stages), its layers, its node
        /// (named by the node's lowest world rank), its busy time and the seconds it waited in
        /// pipeline receives, the seconds it took to get its weights (read, or mapped from the
        /// node's shared copy; the root's own read during planning is in plan_seconds), and its
        /// memory: RSS counts shared pages in full, PSS shares them out.
        public struct Rank: Codable, Sendable {
            public var rank: Int
            public var group: Int
            public var stage: Int
            public var layers: [Int]
            public var node: Int
            public var seconds: Double
            public var waitSeconds: Double
            public var loadSeconds: Double
            public var idleFraction: Double
            public var weightBytes: Int
            public var sharedWeights: Bool
            public var peakRSSBytes: Int
            public var rssBytes: Int
            public var pssBytes: Int
            /// What one rank knows of itself, its memory read now; the idle fraction is its waits
            /// over its busy time.
            init(rank: Int, group: Int, stage: Int, layers: Range<Int>, node: Int, seconds: Double, waitSeconds: Double, loadSeconds: Double,
                 weightBytes: Int, sharedWeights: Bool) {
                self.rank = rank; self.group = group; self.stage = stage; self.layers = [layers.lowerBound, layers.upperBound]
                self.node = node; self.seconds = seconds; self.waitSeconds = waitSeconds; self.loadSeconds = loadSeconds
                idleFraction = seconds > 0 ? min(1, waitSeconds / seconds) : 0
                self.weightBytes = weightBytes; self.sharedWeights = sharedWeights
                peakRSSBytes = ProcessMemory.peakResident ?? 0; rssBytes = ProcessMemory.resident ?? 0; pssBytes = ProcessMemory.proportional ?? 0
            }
            enum CodingKeys: String, CodingKey {
                case rank, group, stage, layers, node, seconds, waitSeconds = "wait_seconds", loadSeconds = "load_seconds", idleFraction = "idle_fraction"
                case weightBytes = "weight_bytes", sharedWeights = "shared_weights", peakRSSBytes = "peak_rss_bytes", rssBytes = "rss_bytes", pssBytes = "pss_bytes"
            }
        }
        /// One node: its ranks' summed PSS (the node's real use) and summed peak RSS.
        public struct Node: Codable, Sendable {
            public var node: Int
            public var ranks: Int
            public var pssBytes: Int
            public var peakRSSBytes: Int
            enum CodingKeys: String, CodingKey { case node, ranks, pssBytes = "pss_bytes", peakRSSBytes = "peak_rss_bytes" }
        }
        public var ranks: [Rank]
        public var nodes: [Node]

        /// From every world rank's own record, in rank order (the world gather).
        init(ranks: [Rank]) {
            self.ranks = ranks
            nodes = Set(ranks.map(\.node)).sorted().map { node in
                let on = ranks.filter { $0.node == node }
                return Node(node: node, ranks: on.count, pssBytes: on.map(\.pssBytes).reduce(0, +), peakRSSBytes: on.map(\.peakRSSBytes).reduce(0, +))
            }
        }
    }

    /// Each stage's layers and its mean idle fraction over the groups: the seconds its ranks
    /// waited in receives over their busy time (the pipeline's bubble as the stage saw it).
    public struct Pipeline: Codable, Sendable {
        public var layersPerStage: [[Int]]
        public var idleFractionPerStage: [Double]
        enum CodingKeys: String, CodingKey { case layersPerStage = "layers_per_stage", idleFractionPerStage = "idle_fraction_per_stage" }

        init(placement: Placement, stages: Int) {
            layersPerStage = (0..<stages).map { s in placement.ranks.first { $0.stage == s }?.layers ?? [] }
            idleFractionPerStage = (0..<stages).map { s in
                let f = placement.ranks.filter { $0.stage == s }.map(\.idleFraction)
                return f.isEmpty ? 0 : f.reduce(0, +) / Double(f.count)
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case cnlReport = "cnl_report", created, configFile = "config_file", config, fingerprints, model, data, grid
        case results, convergence, ranks, blasThreadsPerRank = "threads_per_rank", timings
        case job, samplesFromCheckpoints = "samples_from_checkpoints", perSampleStore = "per_sample_store"
        case stages, pipeline, placement
    }

    init(state: LocalizationRun.RootState, result: LocalizationResult, ranks: Int, blasThreads: Int, timings: Timings) {
        let m = state.loaded.model
        func range(_ v: [Int]) -> DataInfo.Range {
            DataInfo.Range(min: v.min() ?? 0, mean: v.isEmpty ? 0 : Double(v.reduce(0, +)) / Double(v.count), max: v.max() ?? 0)
        }
        let cap = state.config.maxAnswerTokens ?? Int.max
        created = ISO8601DateFormatter().string(from: Date())
        configFile = state.configPath
        config = state.config
        fingerprints = state.fingerprints
        model = ModelInfo(path: state.config.model, architecture: m.modelType, layers: m.dimensions.layers,
                          ffnWidth: m.dimensions.ffnWidth, neurons: m.dimensions.neuronCount)
        data = DataInfo(path: state.config.dataset.path, samples: state.plan.sampleCount, sizeA: state.plan.sizeA, sizeB: state.plan.sizeB,
                        promptTokens: range(state.samples.map(\.prompt.count)), answerTokens: range(state.samples.map { min(cap, $0.answer.count) }))
        grid = state.plan.grid
        results = result.perSigma
        convergence = result.convergence
        self.ranks = ranks
        blasThreadsPerRank = blasThreads
        self.timings = timings
        job = state.generation
        samplesFromCheckpoints = state.inherited.finished.count
    }

    /// The lines a user reads at the end of a run.
    public var summary: [String] {
        var lines = ["located neurons (\(config.spread.rawValue) spread; \(data.samples) samples; a: \(data.sizeA), b: \(data.sizeB)):"]
        for r in results {
            lines.append(String(format: "  σ = %-4g whole %5d (%.4f%%)   a %5d   b %5d   overlap %@   IoU %@",
                                r.sigma, r.whole.neurons, 100 * r.whole.fraction, r.a.neurons, r.b.neurons,
                                OverlapMetrics.describe(r.agreement.overlap), OverlapMetrics.describe(r.agreement.iou)))
        }
        if samplesFromCheckpoints > 0 {
            lines.append("resumed (job \(job) of this run): \(samplesFromCheckpoints) samples from checkpoints, \(data.samples - samplesFromCheckpoints) computed now")
        }
        lines.append(String(format: "time %.1f s (attribution %.1f s, %.3f samples/s) on %d rank%@ × %d thread%@",
                            timings.totalSeconds, timings.attributionSeconds, timings.samplesPerSecond, ranks, ranks == 1 ? "" : "s",
                            blasThreadsPerRank, blasThreadsPerRank == 1 ? "" : "s")
                     + (stages > 1 ? " (\(ranks / stages) group\(ranks / stages == 1 ? "" : "s") of \(stages) stages)" : ""))
        if let pipeline {
            lines.append("pipeline: stage layers " + pipeline.layersPerStage.map { $0.count == 2 ? "\($0[0])–\($0[1] - 1)" : "?" }.joined(separator: ", ")
                         + "; idle " + pipeline.idleFractionPerStage.map { String(format: "%.0f %%", 100 * $0) }.joined(separator: ", "))
        }
        if let placement {
            let shared = placement.ranks.contains { $0.sharedWeights }
            lines.append("memory: " + placement.nodes.map { String(format: "node %d: %d rank%@, PSS %.0f MB", $0.node, $0.ranks, $0.ranks == 1 ? "" : "s", Double($0.pssBytes) / 1e6) }.joined(separator: "; ")
                         + (shared ? " (weights shared per node)" : ""))
        }
        return lines
    }
}
