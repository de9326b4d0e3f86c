// Restarts `cnl` with OPENBLAS_CORETYPE when OpenBLAS fell back to generic kernels (BLASCore).
// It must happen before MPI_Init and before any work: exec keeps the process id, so mpirun, srun
// and Slurm see the same rank, and the new image loads OpenBLAS with the better kernels.
import ArgumentParser
import Engine
import Foundation

enum BLASKernelRestart {
    /// Set on the restarted process: the kernel set OpenBLAS had chosen on its own.
    static let replacedVariable = "CNL_OPENBLAS_REPLACED_CORE"

    static func restartIfOpenBLASFellBack() {
        let env = ProcessInfo.processInfo.environment
        // The user's own OPENBLAS_CORETYPE (or our earlier restart) decides; CNL_BLAS_CORE=keep
        // keeps OpenBLAS's choice, e.g. to compare kernels.
        guard env["OPENBLAS_CORETYPE"] == nil, env["CNL_BLAS_CORE"] != "keep" else { return }
        let current = BLASCore.current
        guard let better = BLASCore.replacement(current: current, cpuFlags: BLASCore.cpuFlags) else { return }
        setenv("OPENBLAS_CORETYPE", better, 1)
        setenv(replacedVariable, current, 1)
        if launcherRank() == 0 {  // one line per job, not per rank
            FileHandle.standardError.write(Data("""
            cnl: OpenBLAS chose its generic '\(current)' kernels on this CPU; restarting with \
            OPENBLAS_CORETYPE=\(better) (set OPENBLAS_CORETYPE yourself to choose, or CNL_BLAS_CORE=keep)

            """.utf8))
        }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached if exec failed (no /proc): go on with the slow kernels rather than stop.
        let reason = String(cString: strerror(errno))
        unsetenv("OPENBLAS_CORETYPE")
        unsetenv(replacedVariable)
        FileHandle.standardError.write(Data("cnl: warning: could not restart (\(reason)); keeping OpenBLAS's '\(current)' kernels\n".utf8))
    }
}

/// `cnl blas`: which OpenBLAS kernels this process runs, and why.
struct BLAS: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the OpenBLAS kernels cnl runs on this CPU.",
        discussion: """
        An OpenBLAS older than the CPU falls back to generic SSE3 kernels (Debian 12's 0.3.21 on \
        Intel model 207 runs sgemm 5× slower that way). cnl then restarts itself with \
        OPENBLAS_CORETYPE set to the widest kernels the CPU has; a user's own OPENBLAS_CORETYPE \
        wins, and CNL_BLAS_CORE=keep keeps OpenBLAS's choice.
        """)

    @Flag(help: "Print only the OPENBLAS_CORETYPE other programs on this machine should get (empty: none needed).")
    var coretype = false

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let replaced = env[BLASKernelRestart.replacedVariable]
        if coretype {
            // What this process runs when that differs from OpenBLAS's own choice, so that a test
            // runner or a script can export it before loading OpenBLAS itself.
            if replaced != nil || env["OPENBLAS_CORETYPE"] != nil { print(BLASCore.current) } else { print("") }
            return
        }
        print("OpenBLAS: \(BLASCore.configuration)")
        print("kernels: \(BLASCore.current)")
        if let replaced {
            print("OpenBLAS chose '\(replaced)' on its own; cnl restarted with OPENBLAS_CORETYPE=\(env["OPENBLAS_CORETYPE"] ?? "?")")
        } else if let set = env["OPENBLAS_CORETYPE"] {
            print("OPENBLAS_CORETYPE=\(set) was set before cnl started")
        }
        let flags = BLASCore.cpuFlags
        let wide = ["avx512f", "avx512_bf16", "avx2", "fma"].filter(flags.contains)
        print("CPU: \(wide.isEmpty ? "no AVX2/AVX-512 flags read" : wide.joined(separator: ", ")); best kernels: \(BLASCore.bestKernels(cpuFlags: flags) ?? "OpenBLAS's own choice")")
    }
}
