import ArgumentParser

/// Option checks that several commands share: each failure is one `ValidationError` line,
/// found identically on every rank before MPI starts.
enum OptionChecks {
    static func threads(_ threads: Int?) throws {
        if let threads, threads < 1 || threads > 1024 { throw ValidationError("--threads must be between 1 and 1024, got \(threads)") }
    }

    /// A study over located runs (`cnl erase`, `cnl enhance`): some runs and some --eval configs.
    static func study(runs: [String], evals: [String]) throws {
        if runs.isEmpty { throw ValidationError("give at least one run directory") }
        if evals.isEmpty { throw ValidationError("give at least one --eval config") }
    }

    /// K, the random draws per baseline (seeds 0..K−1).
    static func randomSeeds(_ k: Int) throws {
        guard k >= 0 && k <= 1000 else { throw ValidationError("--random-seeds must be between 0 and 1000, got \(k)") }
    }
}
