import Foundation
import Shard

/// The root decides something every rank depends on (the plan of a job, whether its output
/// files were written) and every rank learns the outcome: the root's value, or its error.
/// Used by every command that runs under MPI (locate, evaluate, erase, enhance), so that a bad
/// input is one `cnl: error:` line from the root and a non-zero exit on every rank.
enum RootDecision {
    private struct Message<Value: Codable>: Codable {
        var value: Value?
        var error: String?
    }

    /// Rank 0 runs `decide`; what it returns, or the error it throws, is broadcast as JSON.
    /// Every rank returns the value, or throws: the root a `PlanFailure` (its line printed at
    /// once), the others `failedOnAnotherRank`. Collective: every rank must call it.
    static func broadcast<Value: Codable>(_ mpi: MPIContext, log: (String) -> Void, _ decide: () throws -> Value) throws -> Value {
        var message = Message<Value>()
        if mpi.rank == 0 {
            do { message.value = try decide() } catch { message.error = error.localizedDescription }
        }
        let bytes = try mpi.broadcast(mpi.rank == 0 ? Array(try JSONEncoder().encode(message)) : [])
        let decoded = try JSONDecoder().decode(Message<Value>.self, from: Data(bytes))
        guard let value = decoded.value else {
            if mpi.rank == 0 { throw PlanFailure(reporting: decoded.error ?? "the root failed without a message", log: log) }
            throw LocalizationError.failedOnAnotherRank
        }
        return value
    }
}
