// Which OpenBLAS kernels this process runs, and which this CPU could run.
//
// Why this exists: a DYNAMIC_ARCH OpenBLAS picks its kernels once, when the library loads, from
// the CPU model number. An OpenBLAS older than the CPU does not know the model and falls back to
// its generic "Prescott" (SSE3) kernels. Debian 12's OpenBLAS 0.3.21 does exactly that on Intel's
// model 207 (Emerald Rapids), where its sgemm then runs 26 GFLOP/s on one core instead of the
// 132 GFLOP/s of its own Cooperlake (AVX-512) kernels: every matrix product of cnl 5× slower.
// The choice can only be changed before the library loads (OPENBLAS_CORETYPE), so the command
// line restarts itself with it (`cnl` main); this file only decides.
import COpenBLAS
import Foundation

public enum BLASCore {
    /// The name of the kernel set OpenBLAS chose for this process ("Cooperlake", "Prescott"…).
    public static var current: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's build line ("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH … Prescott MAX_THREADS=64").
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// The CPU feature flags of /proc/cpuinfo ("avx2", "avx512f", "avx512_bf16"…); empty where
    /// they cannot be read (not Linux).
    public static var cpuFlags: Set<String> {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
              let colon = line.firstIndex(of: ":") else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }

    /// The best OpenBLAS kernel set for CPUs with these flags, in OpenBLAS's own names, or nil
    /// where nothing beats OpenBLAS's own choice. AVX-512 (F, CD, BW, DQ, VL): SkylakeX, or
    /// Cooperlake where the CPU also has AVX512-BF16 (what OpenBLAS picks on the Sapphire
    /// Rapids it knows). AVX2 with FMA: Haswell.
    public static func bestKernels(cpuFlags flags: Set<String>) -> String? {
        if ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) {
            return flags.contains("avx512_bf16") ? "Cooperlake" : "SkylakeX"
        }
        if flags.contains("avx2") && flags.contains("fma") { return "Haswell" }
        return nil
    }

    /// The kernel set to restart with, or nil to keep `current`: only when OpenBLAS chose a set
    /// that uses less of the CPU than `bestKernels` (its generic fallback on a CPU it does not
    /// know). A set at least as wide (e.g. SapphireRapids, Zen on an AVX2 CPU) is kept.
    public static func replacement(current: String, cpuFlags flags: Set<String>) -> String? {
        guard let best = bestKernels(cpuFlags: flags) else { return nil }
        let avx512Sets: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]
        let avx2Sets = avx512Sets.union(["haswell", "zen"])
        let wideEnough = best == "Haswell" ? avx2Sets : avx512Sets
        return wideEnough.contains(current.lowercased()) ? nil : best
    }
}
