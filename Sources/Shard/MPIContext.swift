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
    /// Internal to Shard: the node-shared weights window is made on it.
    private(set) var comm: MPI_Comm?
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

    /// A context over a communicator made from another (`split`): MPI is already running.
    private init(communicator: MPI_Comm?, rank: Int, size: Int) {
        comm = communicator
        self.rank = rank
        self.size = size
        startedMPI = false
    }

    /// The ranks with the same `color` in a communicator of their own, ordered by `key`
    /// (pipeline stages: the ranks of one group; the groups' first stages). Collective.
    public func split(color: Int, key: Int) throws -> MPIContext {
        var sub: MPI_Comm? = cnl_mpi_comm_null()
        try check("MPI_Comm_split", MPI_Comm_split(comm, Int32(color), Int32(key), &sub))
        return MPIContext(wrapping: sub)
    }

    /// The ranks of this node (those that can share memory: MPI_COMM_TYPE_SHARED), ordered by
    /// `key`. Collective.
    public func splitByNode(key: Int) throws -> MPIContext {
        var sub: MPI_Comm? = cnl_mpi_comm_null()
        try check("MPI_Comm_split_type", MPI_Comm_split_type(comm, Int32(cnl_mpi_comm_type_shared()), Int32(key), cnl_mpi_info_null(), &sub))
        return MPIContext(wrapping: sub)
    }

    /// A new communicator as a context: errors returned (not fatal), its rank and size.
    private convenience init(wrapping sub: MPI_Comm?) {
        MPI_Comm_set_errhandler(sub, cnl_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(sub, &r)
        MPI_Comm_size(sub, &s)
        self.init(communicator: sub, rank: Int(r), size: Int(s))
    }

    public func barrier() throws { try check("MPI_Barrier", MPI_Barrier(comm)) }

    deinit { finalize() }

    /// Frees the communicator and ends MPI if this context started it; call it before exiting
    /// (Open MPI treats a rank that exits without finalizing as a crash of the whole job).
    public func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        guard finalized == 0, comm != nil else { return }
        MPI_Comm_free(&comm)
        comm = nil
        if startedMPI { MPI_Finalize() }
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

    // MARK: Collectives (each checked; every rank must call them in the same order)

    /// The root's bytes on every rank (the length goes first, so other ranks pass nothing).
    public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
        var count = Int64(rank == root ? bytes.count : 0)
        try check("MPI_Bcast(length)", MPI_Bcast(&count, 1, cnl_mpi_int64(), Int32(root), comm))
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        var offset = 0
        // MPI counts are Int32: send large payloads in slices.
        while offset < buffer.count {
            let n = min(buffer.count - offset, 1 << 30)
            let rc = buffer.withUnsafeMutableBytes { MPI_Bcast($0.baseAddress! + offset, Int32(n), cnl_mpi_byte(), Int32(root), comm) }
            try check("MPI_Bcast", rc)
            offset += n
        }
        return buffer
    }

    /// Element-wise Int64 sum of every rank's `values` on the root (nil elsewhere). Integer
    /// addition is associative, so the result does not depend on MPI's reduction tree.
    public func sumInt64(_ values: [Int64], root: Int = 0) throws -> [Int64]? {
        var result = [Int64](repeating: 0, count: rank == root ? values.count : 0)
        var offset = 0
        repeat {
            let n = min(values.count - offset, 1 << 28)
            let rc = values.withUnsafeBufferPointer { src in
                result.withUnsafeMutableBufferPointer { dst in
                    MPI_Reduce(src.baseAddress! + offset, rank == root ? dst.baseAddress! + offset : nil,
                               Int32(n), cnl_mpi_int64(), cnl_mpi_sum(), Int32(root), comm)
                }
            }
            try check("MPI_Reduce", rc)
            offset += n
        } while offset < values.count
        return rank == root ? result : nil
    }

    /// Every rank's `values` (same count on each) on the root, rank after rank (nil elsewhere).
    public func gather(_ values: [Double], root: Int = 0) throws -> [Double]? {
        var result = [Double](repeating: 0, count: rank == root ? values.count * size : 0)
        let rc = values.withUnsafeBufferPointer { src in
            result.withUnsafeMutableBufferPointer { dst in
                MPI_Gather(src.baseAddress, Int32(values.count), cnl_mpi_double(),
                           rank == root ? dst.baseAddress : nil, Int32(values.count), cnl_mpi_double(), Int32(root), comm)
            }
        }
        try check("MPI_Gather", rc)
        return rank == root ? result : nil
    }

    /// Every rank's bytes (any length each) on the root, in rank order (nil elsewhere): the
    /// lengths go first (MPI_Gather), then the bytes (MPI_Gatherv).
    public func gatherBytes(_ bytes: [UInt8], root: Int = 0) throws -> [[UInt8]]? {
        guard bytes.count < Int(Int32.max) else {
            throw MPIError.call(operation: "gatherBytes", rank: rank, code: -1, message: "\(bytes.count) bytes exceed one MPI message")
        }
        var length = Int32(bytes.count)
        var lengths = [Int32](repeating: 0, count: rank == root ? size : 0)
        try lengths.withUnsafeMutableBufferPointer { lb in
            try check("MPI_Gather(lengths)", MPI_Gather(&length, 1, cnl_mpi_int32(), rank == root ? lb.baseAddress : nil, 1,
                                                        cnl_mpi_int32(), Int32(root), comm))
        }
        var displacements = [Int32](repeating: 0, count: lengths.count)
        var total = 0
        for (r, n) in lengths.enumerated() {
            guard total + Int(n) < Int(Int32.max) else {
                throw MPIError.call(operation: "gatherBytes", rank: rank, code: -1, message: "the gathered bytes exceed one MPI message")
            }
            displacements[r] = Int32(total); total += Int(n)
        }
        var result = [UInt8](repeating: 0, count: max(total, 1))
        let rc = bytes.withUnsafeBufferPointer { src in
            result.withUnsafeMutableBufferPointer { dst in
                lengths.withUnsafeBufferPointer { lb in
                    displacements.withUnsafeBufferPointer { db in
                        MPI_Gatherv(src.baseAddress, length, cnl_mpi_byte(), rank == root ? dst.baseAddress : nil, lb.baseAddress, db.baseAddress,
                                    cnl_mpi_byte(), Int32(root), comm)
                    }
                }
            }
        }
        try check("MPI_Gatherv", rc)
        guard rank == root else { return nil }
        return lengths.indices.map { r in Array(result[Int(displacements[r])..<(Int(displacements[r]) + Int(lengths[r]))]) }
    }

    // MARK: Point to point, for pipeline stages: sends copy and never wait, receives wait

    /// Sends `count` elements of `size` bytes at `values` (copied first, so the caller may
    /// reuse its buffer at once) without waiting for the receiver.
    public func post(bytes values: UnsafeRawPointer, count: Int, datatype: MPI_Datatype?, elementSize: Int, to destination: Int, tag: Int32) throws {
        guard count < Int(Int32.max) else {
            throw MPIError.call(operation: "MPI_Isend", rank: rank, code: -1, message: "\(count) elements exceed one MPI message")
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(count * elementSize, 1), alignment: 64)
        buffer.copyMemory(from: values, byteCount: count * elementSize)
        var request: MPI_Request? = nil
        let rc = MPI_Isend(buffer, Int32(count), datatype, Int32(destination), tag, comm, &request)
        guard rc == cnl_mpi_success() else { buffer.deallocate(); try check("MPI_Isend", rc); return }
        pendingData.append((request, buffer))
        pendingData.removeAll { entry in
            var done: Int32 = 0
            var r = entry.request
            MPI_Test(&r, &done, cnl_mpi_status_ignore())
            if done != 0 { entry.buffer.deallocate() }
            return done != 0
        }
    }

    public func post(_ values: UnsafePointer<Float>, count: Int, to destination: Int, tag: Int32) throws {
        try post(bytes: values, count: count, datatype: cnl_mpi_float(), elementSize: 4, to: destination, tag: tag)
    }

    public func post(_ values: [Double], to destination: Int, tag: Int32) throws {
        try values.withUnsafeBytes { try post(bytes: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 64)!, count: values.count, datatype: cnl_mpi_double(), elementSize: 8, to: destination, tag: tag) }
    }

    /// Receives exactly `count` floats from `source` (a message of another length is an error).
    public func receive(_ values: UnsafeMutablePointer<Float>, count: Int, from source: Int, tag: Int32) throws {
        var status = MPI_Status()
        try check("MPI_Recv", MPI_Recv(values, Int32(count), cnl_mpi_float(), Int32(source), tag, comm, &status))
        var got: Int32 = 0
        MPI_Get_count(&status, cnl_mpi_float(), &got)
        guard Int(got) == count else {
            throw MPIError.call(operation: "MPI_Recv", rank: rank, code: -1, message: "expected \(count) floats from rank \(source), got \(got)")
        }
    }

    /// The next Doubles `source` sent with `tag` (any length); nil if none has arrived and !wait.
    public func receiveDoubles(from source: Int, tag: Int32, wait: Bool) throws -> [Double]? {
        var status = MPI_Status()
        if wait {
            try check("MPI_Probe", MPI_Probe(Int32(source), tag, comm, &status))
        } else {
            var flag: Int32 = 0
            try check("MPI_Iprobe", MPI_Iprobe(Int32(source), tag, comm, &flag, &status))
            if flag == 0 { return nil }
        }
        var n: Int32 = 0
        MPI_Get_count(&status, cnl_mpi_double(), &n)
        var values = [Double](repeating: 0, count: Int(n))
        try values.withUnsafeMutableBufferPointer { vb in
            try check("MPI_Recv", MPI_Recv(vb.baseAddress, n, cnl_mpi_double(), Int32(source), tag, comm, cnl_mpi_status_ignore()))
        }
        return values
    }

    /// Waits for every posted data message (the receivers must be receiving them).
    public func completePostedData() throws {
        for var entry in pendingData {
            try check("MPI_Wait", MPI_Wait(&entry.request, cnl_mpi_status_ignore()))
            entry.buffer.deallocate()
        }
        pendingData.removeAll()
    }
    private var pendingData: [(request: MPI_Request?, buffer: UnsafeMutableRawPointer)] = []

    // MARK: Point to point, for progress messages that must never make anyone wait

    /// Sends `value` to `destination` without blocking; `completePendingSends()` finishes them.
    public func postValue(_ value: Int64, to destination: Int, tag: Int32) throws {
        let buffer = UnsafeMutablePointer<Int64>.allocate(capacity: 1)
        buffer.pointee = value
        var request: MPI_Request? = nil
        let rc = MPI_Isend(buffer, 1, cnl_mpi_int64(), Int32(destination), tag, comm, &request)
        guard rc == cnl_mpi_success() else { buffer.deallocate(); try check("MPI_Isend", rc); return }
        pending.append((request, buffer))
        // Free the ones already delivered, so a long run keeps a short list.
        pending.removeAll { entry in
            var done: Int32 = 0
            var r = entry.request
            MPI_Test(&r, &done, cnl_mpi_status_ignore())
            if done != 0 { entry.buffer.deallocate() }
            return done != 0
        }
    }

    /// Waits for every posted send (the receiver must be receiving them).
    public func completePendingSends() throws {
        for var entry in pending {
            try check("MPI_Wait", MPI_Wait(&entry.request, cnl_mpi_status_ignore()))
            entry.buffer.deallocate()
        }
        pending.removeAll()
    }
    private var pending: [(request: MPI_Request?, buffer: UnsafeMutablePointer<Int64>)] = []

    /// A value posted with `tag` by any rank, if one has arrived (or, with `wait`, the next one).
    public func receiveValue(tag: Int32, wait: Bool) throws -> (source: Int, value: Int64)? {
        var status = MPI_Status()
        if !wait {
            var flag: Int32 = 0
            try check("MPI_Iprobe", MPI_Iprobe(cnl_mpi_any_source(), tag, comm, &flag, &status))
            if flag == 0 { return nil }
        } else {
            try check("MPI_Probe", MPI_Probe(cnl_mpi_any_source(), tag, comm, &status))
        }
        var value: Int64 = 0
        try check("MPI_Recv", MPI_Recv(&value, 1, cnl_mpi_int64(), status.MPI_SOURCE, tag, comm, cnl_mpi_status_ignore()))
        return (Int(status.MPI_SOURCE), value)
    }

    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(cnl_mpi_max_error_string()) + 1)
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        return String(cString: buf)
    }
}
