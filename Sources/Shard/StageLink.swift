// The MPI side of pipeline stages: a group's ranks pass hidden states up, gradients down, and parts to stage 0.
import Engine
import Foundation

/// One rank's link to the other stages of its group (`group`: the group's communicator, in
/// which rank = stage). Sends are copied and posted without waiting (MPI_Isend), so a stage
/// never waits on a send; receives block, and the time spent in them is the stage's idle
/// time: the bubble of the pipeline, as this rank saw it.
public final class MPIStageLink: StageLink {
    public let group: MPIContext
    public var stage: Int { group.rank }
    public var stages: Int { group.size }
    /// Seconds this rank waited in receives (for hidden states, gradients or parts).
    public private(set) var waitSeconds = 0.0

    static let forwardTag: Int32 = 7401, backwardTag: Int32 = 7402, partTag: Int32 = 7403

    public init(group: MPIContext) { self.group = group }

    private func timed<T>(_ body: () throws -> T) rethrows -> T {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        return try body()
    }

    public func sendToNext(_ values: UnsafePointer<Float>, count: Int) throws {
        try group.post(values, count: count, to: stage + 1, tag: Self.forwardTag)
    }

    public func receiveFromPrevious(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        try timed { try group.receive(values, count: count, from: stage - 1, tag: Self.forwardTag) }
    }

    public func sendToPrevious(_ values: UnsafePointer<Float>, count: Int) throws {
        try group.post(values, count: count, to: stage - 1, tag: Self.backwardTag)
    }

    public func receiveFromNext(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        try timed { try group.receive(values, count: count, from: stage + 1, tag: Self.backwardTag) }
    }

    public func sendPart(_ values: [Double]) throws {
        try group.post(values, to: 0, tag: Self.partTag)
    }

    public func receivePart(from stage: Int, wait: Bool) throws -> [Double]? {
        try timed { try group.receiveDoubles(from: stage, tag: Self.partTag, wait: wait) }
    }

    public func finishSends() throws { try timed { try group.completePostedData() } }
}
