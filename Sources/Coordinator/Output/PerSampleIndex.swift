// per-sample/index.json: where each sample's stored score is, with its half and position (for cnl converge).
import Foundation
import Shard

/// The run's per-sample store: `per-sample/g<job>-r<rank>.zst` streams of zstd frames (one per
/// sample: L·J little-endian values of `precision`) and this index, written by the root when
/// the run finishes. Offsets and lengths are byte ranges of one frame in its stream.
public struct PerSampleIndex: Codable, Sendable {
    public static let directoryName = "per-sample"
    public static let fileName = "index.json"

    public struct Entry: Codable, Sendable {
        public var index: Int
        public var line: Int
        public var half: ABSplit.Half
        public var position: Int
        public var file: String
        public var offset: Int
        public var length: Int
    }

    public var format = "cnl per-sample v1"
    public var precision: StorePrecision
    /// [L, J]: each frame decompresses to L·J values, row-major.
    public var shape: [Int]
    public var seed: UInt64
    public var samples: [Entry]

    /// Size summary for report.json.
    public struct Summary: Codable, Sendable {
        public var precision: StorePrecision
        public var samples: Int
        public var bytesPerSampleRaw: Int
        public var bytesPerSampleCompressed: Double
        enum CodingKeys: String, CodingKey {
            case precision, samples, bytesPerSampleRaw = "bytes_per_sample_raw", bytesPerSampleCompressed = "bytes_per_sample_compressed"
        }
    }

    static func write(run: String, precision: StorePrecision, plan: RunPlan, seed: UInt64, samples: [TokenizedSample],
                      entries: [FinishedSample], layers: Int, ffnWidth: Int,
                      thisJob: (raw: Int, compressed: Int, samples: Int)) throws -> Summary {
        let placement = ABSplit(count: samples.count, seed: seed).placement()
        let list = try entries.map { e -> Entry in
            guard let file = e.store, let offset = e.offset, let length = e.length else {
                throw LocalizationError.lostSamples(expected: samples.count, got: entries.count)
            }
            return Entry(index: e.index, line: samples[e.index].line, half: placement[e.index].half,
                         position: placement[e.index].rank, file: file, offset: offset, length: length)
        }
        let index = PerSampleIndex(precision: precision, shape: [layers, ffnWidth], seed: seed, samples: list)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let dir = (run as NSString).appendingPathComponent(directoryName)
        try AtomicFile.write(try enc.encode(index) + Data("\n".utf8), to: (dir as NSString).appendingPathComponent(fileName))
        let total = list.reduce(0) { $0 + $1.length }
        return Summary(precision: precision, samples: list.count, bytesPerSampleRaw: layers * ffnWidth * precision.bytesPerValue,
                       bytesPerSampleCompressed: Double(total) / Double(max(1, list.count)))
    }

    public static func load(run: String) throws -> PerSampleIndex {
        let path = ((run as NSString).appendingPathComponent(directoryName) as NSString).appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StoreError.missing(path: path)
        }
        do { return try JSONDecoder().decode(PerSampleIndex.self, from: data) } catch {
            throw StoreError.malformed(path: path, detail: error.localizedDescription)
        }
    }

    /// Sample `e`'s [L·J] scores.
    public func scores(of e: Entry, run: String) throws -> [Double] {
        let dir = (run as NSString).appendingPathComponent(Self.directoryName)
        return try PerSampleStore.read(FinishedSample(index: e.index, store: e.file, offset: e.offset, length: e.length),
                                       directory: dir, precision: precision, count: shape.reduce(1, *))
    }
}

public enum StoreError: Error, LocalizedError, Equatable {
    case missing(path: String)
    case malformed(path: String, detail: String)
    public var errorDescription: String? {
        switch self {
        case let .missing(path): return "\(path): no per-sample store; run `cnl locate` with --save-per-sample to keep every sample's scores"
        case let .malformed(path, detail): return "\(path): not a valid per-sample index (\(detail))"
        }
    }
}

/// The store's precision as the command line sees it (cnl imports Coordinator only).
public typealias ScoreStorePrecision = StorePrecision
