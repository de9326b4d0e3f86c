// One rank's checkpoint: its exact bucket sums and the samples they contain, checksummed and compressed.
import Foundation

/// A sample whose score is in a checkpoint's sums, and where its score sits in the per-sample
/// store (when the run keeps one).
public struct FinishedSample: Codable, Sendable, Equatable {
    public var index: Int
    public var store: String?
    public var offset: Int?
    public var length: Int?
    public init(index: Int, store: String? = nil, offset: Int? = nil, length: Int? = nil) {
        self.index = index; self.store = store; self.offset = offset; self.length = length
    }
}

/// File layout: "CNLCKPT1", UInt64 header length, JSON header, UInt64 payload length, zstd of the
/// sums' Int64 limbs (little-endian), then SHA-256 of all bytes before it. Written to a temporary
/// name and renamed, so a crash mid-write leaves the previous checkpoint in place.
public struct RunCheckpoint: Sendable, Equatable {
    public struct Header: Codable, Sendable, Equatable {
        /// What the sums depend on (model, data, samples, attribution options, bucket layout…):
        /// a checkpoint is only resumed by a run with the same values.
        public var identity: [String: String]
        /// Jobs that resumed before this one (0 for a fresh run).
        public var generation: Int
        public var rank: Int
        public var ranks: Int
        public var scoreCount: Int
        public var buckets: Int
        public var finished: [FinishedSample]

        public init(identity: [String: String], generation: Int, rank: Int, ranks: Int, scoreCount: Int, buckets: Int,
                    finished: [FinishedSample]) {
            self.identity = identity; self.generation = generation; self.rank = rank; self.ranks = ranks
            self.scoreCount = scoreCount; self.buckets = buckets; self.finished = finished
        }
    }

    public var header: Header
    public var sums: ScoreAccumulator

    static let magic = Data("CNLCKPT1".utf8)

    public init(header: Header, sums: ScoreAccumulator) {
        self.header = header
        self.sums = sums
    }

    public func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = try enc.encode(header)
        let limbs = sums.flattened()
        let payload = try Zstd.compress(limbs.withUnsafeBufferPointer { Data(buffer: $0) })
        var out = Self.magic
        func put(_ v: UInt64) { var le = v.littleEndian; withUnsafeBytes(of: &le) { out.append(contentsOf: $0) } }
        put(UInt64(json.count))
        out.append(json)
        put(UInt64(payload.count))
        out.append(payload)
        out.append(contentsOf: { var h = SHA256(); h.update(out); return h.finalize() }())
        return out
    }

    public func write(to path: String) throws {
        let data = try encoded()
        try AtomicFile.write(data, to: path) { CheckpointFileError.cannotWrite(path: path, reason: $0) }
    }

    /// Reads and verifies a checkpoint: every corruption (truncation, flipped bits, wrong sizes)
    /// is an error naming the file, never a silently wrong sum.
    public static func read(path: String) throws -> RunCheckpoint {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointFileError.corrupt(path: path, detail: "cannot read the file")
        }
        func bad(_ d: String) -> CheckpointFileError { .corrupt(path: path, detail: d) }
        guard data.count >= magic.count + 8 + 8 + 32 else { throw bad("truncated (\(data.count) bytes)") }
        guard data.prefix(magic.count) == magic else { throw bad("not a cnl checkpoint (bad magic)") }
        let body = data.prefix(data.count - 32)
        var h = SHA256()
        h.update(body)
        guard Data(h.finalize()) == data.suffix(32) else { throw bad("checksum mismatch (truncated or modified)") }
        func u64(at o: Int) -> Int {
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(data[data.startIndex + o + i]) << (8 * UInt64(i)) }
            return v > UInt64(Int.max) ? -1 : Int(v)
        }
        let jsonLength = u64(at: magic.count)
        let jsonStart = magic.count + 8
        guard jsonLength >= 0, jsonStart + jsonLength + 8 <= body.count else { throw bad("header length out of range") }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: data.subdata(in: jsonStart..<(jsonStart + jsonLength))) } catch {
            throw bad("header is not valid: \(error.localizedDescription)")
        }
        let payloadLength = u64(at: jsonStart + jsonLength)
        let payloadStart = jsonStart + jsonLength + 8
        guard payloadLength >= 0, payloadStart + payloadLength == body.count else { throw bad("payload length out of range") }
        guard header.scoreCount > 0, header.buckets > 0, header.buckets < 1 << 20 else { throw bad("implausible sizes in header") }
        let limbCount = header.buckets * (3 * header.scoreCount + 1)
        let raw = try Zstd.decompress(data.subdata(in: payloadStart..<(payloadStart + payloadLength)), expectedSize: limbCount * 8)
        let limbs = raw.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        let sums = ScoreAccumulator(scoreCount: header.scoreCount, flattened: limbs)
        let counted = sums.buckets.reduce(Int64(0)) { $0 + $1.additions }
        guard counted == header.finished.count else {
            throw bad("sums hold \(counted) samples but the header lists \(header.finished.count)")
        }
        return RunCheckpoint(header: header, sums: sums)
    }

    /// The identity keys whose values differ, as "key (here: x, checkpoint: y)".
    public static func differences(_ expected: [String: String], _ found: [String: String]) -> [String] {
        Set(expected.keys).union(found.keys).sorted().compactMap { k in
            expected[k] == found[k] ? nil : "\(k) (this run: \(expected[k] ?? "none"), checkpoint: \(found[k] ?? "none"))"
        }
    }
}

public enum CheckpointFileError: Error, LocalizedError, Equatable {
    case corrupt(path: String, detail: String)
    case cannotWrite(path: String, reason: String)
    case foreign(path: String, differences: [String])
    case overlapping(path: String, sample: Int)

    public var errorDescription: String? {
        switch self {
        case let .corrupt(path, detail):
            return "\(path): damaged checkpoint (\(detail)); delete it to start over, or restore it from a backup"
        case let .cannotWrite(path, reason): return "\(path): cannot write checkpoint (\(reason))"
        case let .foreign(path, diffs):
            return "\(path): checkpoint of a different run: \(diffs.joined(separator: "; ")); use another output directory or --force to discard it"
        case let .overlapping(path, sample):
            return "\(path): sample \(sample) is in two checkpoints; the directory mixes runs, use --force to discard them"
        }
    }
}
