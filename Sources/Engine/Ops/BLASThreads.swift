// Thread control of the BLAS library (OpenBLAS keeps its own pool; MPI ranks want one each).
import COpenBLAS
import Foundation

public enum BLASThreads {
    /// Sets OpenBLAS's thread count (as OPENBLAS_NUM_THREADS does at start-up).
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var current: Int { Int(openblas_get_num_threads()) }
}

/// Where this process may run.
public enum CPUAffinity {
    /// CPUs in this process's affinity mask (Linux: `Cpus_allowed_list` of /proc/self/status,
    /// e.g. "0-3,8"), or nil where it cannot be read. mpirun binds each rank to one core by
    /// default when ranks ≤ 2, and more threads than allowed CPUs then share that core.
    public static var allowedCPUs: Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        var count = 0
        for part in line.dropFirst("Cpus_allowed_list:".count).split(separator: ",") {
            let ends = part.trimmingCharacters(in: .whitespaces).split(separator: "-").compactMap { Int($0) }
            guard let first = ends.first else { return nil }
            count += (ends.last ?? first) - first + 1
        }
        return count > 0 ? count : nil
    }
}
