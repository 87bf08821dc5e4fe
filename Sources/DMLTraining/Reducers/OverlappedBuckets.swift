import Foundation
import DMLComm

/// The communication thread of an overlapped step (`--overlap`): bucket reductions handed over as the backward
/// pass completes them run one at a time, in the order handed over, on one serial queue (MPI_THREAD_SERIALIZED:
/// the main thread makes no MPI call until `wait` returns). Used by `BucketedReducer` (each bucket's allreduce)
/// and `ShardedReducer` (each bucket's reduce-scatter).
///
/// Invariant: between `begin` and `wait` the communicator's deadline is the step's own (the communication
/// thread's waits run under it), and `wait` restores the one in force before and rethrows the first error.
final class OverlappedBuckets {
    let comm: Communicator
    let collectiveTimeout: Double
    private let communication = DispatchQueue(label: "dml-communication")
    private let started = DispatchGroup()
    private let failure = LockedError()
    /// The deadline in force before this step set its own.
    private var ambient: CollectiveDeadline?

    init(comm: Communicator, collectiveTimeout: Double) {
        self.comm = comm
        self.collectiveTimeout = collectiveTimeout
    }

    /// A step begins: its waits run under the deadline of `phase`.
    func begin(phase: String) {
        ambient = comm.deadlines.current
        comm.deadlines.current = collectiveTimeout > 0 ? CollectiveDeadline(seconds: collectiveTimeout, phase: phase) : nil
    }

    /// Runs `work` on the communication thread after the work handed over before it.
    func start(_ work: @escaping () throws -> Void) {
        let job = Job(owner: self, work: work)
        started.enter()
        communication.async { job.run() }
    }

    /// Waits for every bucket handed over, restores the deadline, and rethrows the first error.
    func wait() throws {
        started.wait()
        comm.deadlines.current = ambient
        if let error = failure.error { throw error }
    }

    /// One bucket's work, handed to the communication thread.
    private final class Job: @unchecked Sendable {
        let owner: OverlappedBuckets
        let work: () throws -> Void
        init(owner: OverlappedBuckets, work: @escaping () throws -> Void) { self.owner = owner; self.work = work }
        func run() {
            defer { owner.started.leave() }
            do { try work() } catch { owner.failure.record(error) }
        }
    }
}
