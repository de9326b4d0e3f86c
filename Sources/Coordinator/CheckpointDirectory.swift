// The run directory's checkpoints seen from the root: find the latest job's files, verify, merge.
import Foundation
import Shard

/// `<run>/checkpoints/g<generation>-r<rank>.cnlck`. Each job that resumes is one generation
/// later; its root writes, before any rank starts, a checkpoint holding everything the previous
/// generation finished, and only then removes the older files. So the newest generation's files
/// always hold every finished sample exactly once, whatever the rank counts of the jobs were.
public struct CheckpointDirectory {
    public let path: String
    public init(run: String) { path = (run as NSString).appendingPathComponent("checkpoints") }

    public func file(generation: Int, rank: Int) -> String {
        (path as NSString).appendingPathComponent("g\(generation)-r\(rank).cnlck")
    }

    /// (generation, rank, path) of every checkpoint file present.
    public func files() -> [(generation: Int, rank: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.compactMap { name -> (Int, Int, String)? in
            guard name.hasPrefix("g"), name.hasSuffix(".cnlck") else { return nil }
            let parts = name.dropFirst().dropLast(6).split(separator: "-")
            guard parts.count == 2, let g = Int(parts[0]), parts[1].hasPrefix("r"), let r = Int(parts[1].dropFirst()) else { return nil }
            return (g, r, (path as NSString).appendingPathComponent(name))
        }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
    }

    /// What the newest generation holds, merged: nil when there is no checkpoint. Every file is
    /// verified (checksum, sizes) and must carry `identity`; a sample in two files is refused.
    public func latest(identity: [String: String], scoreCount: Int, buckets: Int) throws
        -> (generation: Int, sums: ScoreAccumulator, finished: [FinishedSample])? {
        let all = files()
        guard let newest = all.map(\.generation).max() else { return nil }
        var sums = ScoreAccumulator(scoreCount: scoreCount, buckets: buckets)
        var finished: [FinishedSample] = []
        var seen = Set<Int>()
        for f in all where f.generation == newest {
            let c = try RunCheckpoint.read(path: f.path)
            let diffs = RunCheckpoint.differences(identity, c.header.identity)
            guard diffs.isEmpty else { throw CheckpointFileError.foreign(path: f.path, differences: diffs) }
            guard c.header.scoreCount == scoreCount, c.header.buckets == buckets else {
                throw CheckpointFileError.foreign(path: f.path, differences: ["sizes (\(c.header.buckets) buckets of \(c.header.scoreCount))"])
            }
            for e in c.header.finished {
                guard seen.insert(e.index).inserted else { throw CheckpointFileError.overlapping(path: f.path, sample: e.index) }
            }
            finished += c.header.finished
            for (i, b) in c.sums.buckets.enumerated() { sums.mergeBucket(i, b) }
        }
        return (newest, sums, finished.sorted { $0.index < $1.index })
    }

    /// Removes the files of generations before `generation`.
    public func removeOlder(than generation: Int) {
        for f in files() where f.generation < generation { try? FileManager.default.removeItem(atPath: f.path) }
    }

    public func removeAll() { try? FileManager.default.removeItem(atPath: path) }
}
