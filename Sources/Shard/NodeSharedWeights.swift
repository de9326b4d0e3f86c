// One copy of the weights per node: an MPI-3 shared-memory window that one rank fills and the node's others read.
import CMPI
import Engine
import Foundation

/// The ranks of one node that hold the same weights (all of them, or those of one pipeline
/// stage) map one buffer: MPI_Win_allocate_shared on their communicator, with the whole size
/// on its rank 0 and nothing on the others, which find rank 0's memory through
/// MPI_Win_shared_query. Rank 0 reads the checkpoint into it; everybody then waits at a
/// barrier, after which the buffer is only read. The node's memory is one model plus each
/// rank's workspace, whatever the number of ranks on it.
public final class NodeSharedWeights: SharedWeightStorage {
    public let sharers: MPIContext
    private var window: MPI_Win? = cnl_mpi_win_null()
    public private(set) var bytes = 0

    public init(sharers: MPIContext) { self.sharers = sharers }

    public func allocate(count: Int) throws -> (buffer: UnsafeMutableBufferPointer<Float>, fill: Bool) {
        let size = count * MemoryLayout<Float>.stride
        if sharers.rank == 0 { try Self.checkBackingSpace(bytes: size) }
        var base: UnsafeMutableRawPointer?
        try withUnsafeMutablePointer(to: &base) { bp in
            try sharers.check("MPI_Win_allocate_shared",
                              MPI_Win_allocate_shared(MPI_Aint(sharers.rank == 0 ? size : 0), Int32(MemoryLayout<Float>.stride),
                                                      cnl_mpi_info_null(), sharers.comm, bp, &window))
        }
        if sharers.rank != 0 {
            var found: MPI_Aint = 0
            var unit: Int32 = 0
            try withUnsafeMutablePointer(to: &base) { bp in
                try sharers.check("MPI_Win_shared_query", MPI_Win_shared_query(window, 0, &found, &unit, bp))
            }
            guard Int(found) >= size else {
                throw MPIError.call(operation: "MPI_Win_shared_query", rank: sharers.rank, code: -1,
                                    message: "the shared weights window holds \(found) bytes, \(size) expected")
            }
        }
        guard let base else {
            throw MPIError.call(operation: "MPI_Win_allocate_shared", rank: sharers.rank, code: -1, message: "no memory for \(size) bytes")
        }
        bytes = size
        return (UnsafeMutableBufferPointer(start: base.bindMemory(to: Float.self, capacity: count), count: count), sharers.rank == 0)
    }

    /// Open MPI backs the window with a file in /dev/shm (osc_sm_backing_directory); a tmpfs too
    /// small for it would kill the filling rank with SIGBUS half-way through the read, so the
    /// shortfall is reported first. (Its MPI_Abort then stops the node's other ranks.)
    static func checkBackingSpace(bytes: Int) throws {
        let env = ProcessInfo.processInfo.environment
        let directory = env["OMPI_MCA_osc_sm_backing_directory"] ?? "/dev/shm"
        var fs = statvfs()
        guard statvfs(directory, &fs) == 0 else { return }   // not Linux-like: let MPI decide
        let free = Int(fs.f_bavail) * Int(fs.f_frsize)
        guard free < bytes else { return }
        let gb = { (b: Int) in String(format: "%.2f GB", Double(b) / 1e9) }
        throw SharedWeightsError.backingTooSmall(
            "the node's shared weights need \(gb(bytes)) in \(directory), which has \(gb(free)) free: enlarge it "
            + "(docker --shm-size, or OMPI_MCA_osc_sm_backing_directory=/tmp) or run with --no-shared-weights")
    }

    public func filled() throws { try sharers.barrier() }

    /// Frees the window (collective over the sharers): after the last use of the model.
    public func free() throws {
        guard window != cnl_mpi_win_null() else { return }
        try sharers.check("MPI_Win_free", MPI_Win_free(&window))
    }
}

public enum SharedWeightsError: Error, LocalizedError {
    case backingTooSmall(String)
    public var errorDescription: String? { if case .backingTooSmall(let m) = self { return m }; return nil }
}
