// Thread control of the BLAS library (OpenBLAS keeps its own pool; MPI ranks want one each).
import COpenBLAS

public enum BLASThreads {
    /// Sets OpenBLAS's thread count (as OPENBLAS_NUM_THREADS does at start-up).
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var current: Int { Int(openblas_get_num_threads()) }
}
