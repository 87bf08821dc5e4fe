/// A failure that one or more ranks found, agreed on by all ranks.
public struct AgreedFailure: Error, CustomStringConvertible {
    /// The lowest rank that failed: the one whose message is reported.
    public let rank: Int
    /// Every rank that failed.
    public let failedRanks: [Int]
    public let message: String

    public var description: String { message }
}

extension Communicator {
    /// Collective: each rank passes the problem it found (or nil), and all ranks learn whether any rank
    /// found one. Throws `AgreedFailure` on *every* rank if some rank failed, carrying the message of the
    /// lowest failing rank, so that one rank (rank 0) prints one message and all ranks exit together
    /// instead of some ranks waiting forever for a peer that has left.
    ///
    /// Cost: one allreduce of `size` Int64, plus one broadcast of the message when something failed.
    public func agree(_ localFailure: String?) throws {
        let flags = try allgathered(localFailure == nil ? 0 : 1)
        let failed = flags.indices.filter { flags[$0] != 0 }
        guard let first = failed.first else { return }
        var message = localFailure ?? ""
        try broadcast(&message, root: first)
        throw AgreedFailure(rank: first, failedRanks: failed, message: message)
    }

    /// Runs `body` on every rank and agrees on the outcome: if it throws on any rank, every rank throws
    /// the same `AgreedFailure`. `body` must not itself communicate.
    public func agreeing<R>(_ body: () throws -> R) throws -> R {
        var result: R?
        var failure: String?
        do { result = try body() } catch { failure = String(describing: error) }
        try agree(failure)
        return result!
    }
}
