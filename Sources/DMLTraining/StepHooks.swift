#if canImport(Glibc)
import Glibc
#endif
import Foundation
import DMLComm

/// What every training step of every strategy passes through, at named phases, so that none of it can be
/// skipped by a new strategy: deliberate faults (`FaultPlan`), the timeline's spans, and the **gate** — the
/// agreement at each step on stop signals and on failures found outside any collective, under the step's
/// deadline.
///
/// ```
/// loop:      begin(n) ──▶ strategy.trainStep ──────────────────────────────────────────────▶ end(n, θ)
/// strategy:               data ─▶ compute ─▶ computed(n, …) ─▶ reduce: gate(n) once ─▶ update
/// ```
/// The session loop calls `begin` and `end`; a strategy marks its spans (`span`) and calls `computed` after
/// its local computation and `gate` exactly once per step, at a moment when none of its own communication
/// is in flight (MPI is used one thread at a time); `end` checks that it did. Cost when no fault or timeline
/// is set: a few comparisons per step, and the gate's allreduce of one Int64.
public final class StepHooks {
    public let comm: Communicator
    public let faults: FaultPlan
    /// Records where each step's time goes (`--timeline`); nil records nothing.
    public var timeline: Timeline?
    /// `--collective-timeout`: the deadline of the gate.
    public let collectiveTimeout: Double
    /// A failure this rank found outside any collective (rank 0's metrics write on a full disk): the next
    /// gate agrees on it, and every rank throws it (`AgreedFailure`) before that step's update.
    public var failureToAgree: Error?
    private var mark: UInt64 = 0
    private var gated = 0

    public init(comm: Communicator, faults: FaultPlan = FaultPlan(), collectiveTimeout: Double = 60) {
        self.comm = comm
        self.faults = faults
        self.collectiveTimeout = collectiveTimeout
    }

    /// Step `number` (1-based) begins: `crash`, `hang` and `preempt` faults fire here; the timeline starts.
    public func begin(step number: Int) {
        if faults.fires(.crash, rank: comm.rank, step: number) { faults.crash() }
        if faults.fires(.hang, rank: comm.rank, step: number) { faults.hang() }
        if faults.fires(.preempt, rank: comm.rank, step: number) { Preemption.request(SIGTERM) }
        if let t = timeline { mark = t.now() }
    }

    /// Ends the timeline span `name` of step `number` (it began where the previous span ended).
    @inline(__always)
    public func span(_ name: String, step number: Int) {
        if let t = timeline { mark = t.record(name, step: number, since: mark) }
    }

    /// After this rank's computation of step `number` (`rows` rows): the `nan` fault poisons its loss sum
    /// (`loss`, which goes into the reduction; nil when this rank has no rows in the step), the `slow`
    /// fault makes it a straggler. Ends the `compute` span.
    public func computed(step number: Int, loss: UnsafeMutablePointer<Float>?, rows: Int) {
        if faults.fires(.nan, rank: comm.rank, step: number) { loss?.pointee = .nan }
        if faults.slows(rank: comm.rank, step: number) { usleep(FaultPlan.stragglingPerRow * useconds_t(rows)) }
        span("compute", step: number)
    }

    /// The gate of step `number`, with `completed` steps done: the ranks agree (one allreduce, max) on whether
    /// any received a stop signal — then every rank throws `Preempted`, before the step's update — or has a
    /// failure to agree on — then every rank throws it. Under the step's deadline: a rank that never arrives
    /// is named by the roll call. The `hang` fault `at=allreduce` stops this rank right after it, so the others
    /// wait inside the reduction. Ends the `wait` span.
    public func gate(step number: Int, completed: Int) throws {
        precondition(gated < number, "the gate of step \(number) ran twice")
        gated = number
        let local = failureToAgree != nil ? Self.failureFlag : Int64(Preemption.signal)
        try comm.watched("the start of step \(number)", seconds: collectiveTimeout) {
            let agreed = try comm.allreduced(local, op: .max)
            if agreed >= Self.failureFlag { try comm.agree(error: failureToAgree) }
            if agreed != 0 { throw Preempted(signal: Int32(agreed), step: completed) }
        }
        span("wait", step: number)
        faults.hangIfPlanned(rank: comm.rank, step: number, at: .allreduce)
    }

    /// The gate's flag for "a rank has a failure to agree on": above every signal number.
    static let failureFlag: Int64 = 1 << 16

    /// Step `number` is complete (its update applied to `parameters`): the `perturb` fault shifts one
    /// parameter of this rank (the replica check must catch it); ends the `update` span.
    public func end(step number: Int, parameters: UnsafeMutableBufferPointer<Float>) {
        precondition(gated == number, "step \(number) ended without its gate: every strategy must call StepHooks.gate once per step")
        // Large enough that rounding in later updates cannot wash it out.
        if faults.fires(.perturb, rank: comm.rank, step: number), !parameters.isEmpty { parameters[0] += 1e-3 }
        span("update", step: number)
    }

    /// A phase outside the steps (`verify`, `evaluate`, `checkpoint`) as one timeline span.
    public func outside<R>(_ name: String, step: Int, _ body: () throws -> R) rethrows -> R {
        guard let t = timeline else { return try body() }
        let start = t.now()
        defer { t.record(name, step: step, since: start) }
        return try body()
    }
}
