import DMLStatus

extension CommError: ClassifiedError {
    /// A failed MPI call, a peer that did not answer or that failed: the communication went away, which a
    /// new job on healthy nodes can avoid (`unavailable`). Arguments that cannot work are a bug (`software`).
    public var failureKind: FailureKind {
        switch self {
        case .mpi, .timeout, .peerFailed: return .unavailable
        case .invalidArgument: return .software
        }
    }
}
