// The one owner of MPI: init/finalize, a duplicated world communicator, and checked calls.
import CMPI
import Foundation

/// Errors from MPI calls: the operation, the rank and MPI's own error string.
public enum MPIError: Error, LocalizedError {
    case call(operation: String, rank: Int, code: Int32, message: String)

    public var errorDescription: String? {
        switch self {
        case let .call(op, rank, code, message):
            return "MPI \(op) failed on rank \(rank) (code \(code)): \(message)"
        }
    }
}

/// As mpi4py and horovod do: initialize only if nobody did, finalize only what we started,
/// make errors return instead of aborting, and work on a private duplicate of the world
/// communicator so a library's messages never mix with a user's.
public final class MPIContext {
    public let rank: Int
    public let size: Int
    private var comm: MPI_Comm?
    private let startedMPI: Bool

    public init() throws {
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            let rc = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
            guard rc == cnl_mpi_success() else {
                throw MPIError.call(operation: "MPI_Init_thread", rank: -1, code: rc, message: MPIContext.errorString(rc))
            }
            startedMPI = true
        } else {
            startedMPI = false
        }
        MPI_Comm_set_errhandler(cnl_mpi_comm_world(), cnl_mpi_errors_return())
        var dup: MPI_Comm? = cnl_mpi_comm_null()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(cnl_mpi_comm_world(), &r)
        rank = Int(r)
        let rc = MPI_Comm_dup(cnl_mpi_comm_world(), &dup)
        guard rc == cnl_mpi_success() else {
            throw MPIError.call(operation: "MPI_Comm_dup", rank: Int(r), code: rc, message: MPIContext.errorString(rc))
        }
        comm = dup
        MPI_Comm_size(comm, &s)
        size = Int(s)
    }

    deinit {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 {
            MPI_Comm_free(&comm)
            if startedMPI { MPI_Finalize() }
        }
    }

    /// Sends every MPI call through one check that throws with the operation and the rank.
    public func check(_ operation: String, _ rc: Int32) throws {
        guard rc == cnl_mpi_success() else {
            throw MPIError.call(operation: operation, rank: rank, code: rc, message: MPIContext.errorString(rc))
        }
    }

    /// Brings every rank down: a rank that fails must not leave the others waiting forever.
    public func abort(code: Int32 = 1) -> Never {
        MPI_Abort(comm, code)
        exit(code)
    }

    public func barrier() throws { try check("MPI_Barrier", MPI_Barrier(comm)) }

    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(cnl_mpi_max_error_string()) + 1)
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        return String(cString: buf)
    }
}
