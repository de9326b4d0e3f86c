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

    public func filled() throws { try sharers.barrier() }

    /// Frees the window (collective over the sharers): after the last use of the model.
    public func free() throws {
        guard window != cnl_mpi_win_null() else { return }
        try sharers.check("MPI_Win_free", MPI_Win_free(&window))
    }
}
