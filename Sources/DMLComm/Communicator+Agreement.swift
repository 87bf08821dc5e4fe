import DMLStatus

/// A failure that one or more ranks found, agreed on by all ranks.
public struct AgreedFailure: ClassifiedError, CustomStringConvertible {
    /// The lowest rank that failed: the one whose message is reported.
    public let rank: Int
    /// Every rank that failed.
    public let failedRanks: [Int]
    public let message: String
    /// The kind the lowest failing rank gave its failure (so the job's exit status says what went wrong,
    /// on every rank alike).
    public let failureKind: FailureKind

    public var description: String { message }
}

extension Communicator {
    /// Collective: each rank passes the problem it found (or nil) and its kind, and all ranks learn whether
    /// any rank found one. Throws `AgreedFailure` on *every* rank if some rank failed, carrying the message
    /// and kind of the lowest failing rank, so that one rank (rank 0) prints one message and all ranks exit
    /// together, with the same status, instead of some ranks waiting forever for a peer that has left.
    /// `kind` is ignored when `localFailure` is nil.
    ///
    /// Cost: one allreduce of `size` Int64 (each rank's kind travels in its slot: 0 for none), plus one
    /// broadcast of the message when something failed.
    public func agree(_ localFailure: String?, kind: FailureKind) throws {
        let kinds = try allgathered(localFailure == nil ? 0 : Int64(kind.exitStatus))
        let failed = kinds.indices.filter { kinds[$0] != 0 }
        guard let first = failed.first else { return }
        var message = localFailure ?? ""
        try broadcast(&message, root: first)
        throw AgreedFailure(rank: first, failedRanks: failed, message: message,
                            failureKind: FailureKind(exitStatus: Int32(kinds[first])) ?? .software)
    }

    /// `agree` with the message and kind of `localFailure` (`FailureKind(of:)`), or no failure when nil.
    public func agree(error localFailure: Error?) throws {
        try agree(localFailure.map { String(describing: $0) }, kind: localFailure.map { FailureKind(of: $0) } ?? .software)
    }

    /// Runs `body` on every rank and agrees on the outcome: if it throws on any rank, every rank throws
    /// the same `AgreedFailure`, with the kind of the lowest failing rank's error. `body` must not itself
    /// communicate.
    public func agreeing<R>(_ body: () throws -> R) throws -> R {
        var result: R?
        var failure: Error?
        do { result = try body() } catch { failure = error }
        try agree(error: failure)
        return result!
    }
}
