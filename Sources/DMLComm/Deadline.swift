import DMLStatus
import Foundation

/// How long a blocking wait may last in the phase a job is in, and what to call that phase in a message.
///
/// One mechanism for every collective of a job (as Gloo's per-operation timeouts and c10d's
/// `Options.timeout`): the job sets the deadline of the phase it enters (`Communicator.watched`), and every
/// blocking call of the communicator — point-to-point waits, broadcasts, barriers, `nativeAllreduce`, the
/// shared-memory window's syncs, and so every allreduce algorithm built on them — polls against it. A wait
/// that has not completed after `seconds` ends in a roll call (see `CollectiveStall`) and then a
/// `CollectiveStall` error naming the ranks that did not answer. `seconds` is per wait: it measures how
/// long no progress was made, so a long phase whose waits each complete in time is never cut short.
public struct CollectiveDeadline: Sendable, Equatable {
    /// Longest time one blocking wait may take; 0 or less: no deadline.
    public var seconds: Double
    /// The phase, as a message names it: "the gradient allreduce of step 7", "the checkpoint after step 40".
    public var phase: String

    public init(seconds: Double, phase: String) {
        self.seconds = seconds
        self.phase = phase
    }
}

/// The deadline of a communicator and of every communicator split or duplicated from it: the job sets it,
/// every wait reads it (also from a communication thread, hence the lock). Cost of a read: one lock.
public final class DeadlineState: @unchecked Sendable {
    private let lock = NSLock()
    private var deadline: CollectiveDeadline?
    private var hook: (@Sendable (Double) -> Bool)?
    private var continued: (@Sendable () -> Double)?

    public init() {}

    /// The deadline now in force; nil waits forever (blocking calls stay blocking, at no cost).
    public var current: CollectiveDeadline? {
        get { lock.lock(); defer { lock.unlock() }; return deadline }
        set { lock.lock(); deadline = newValue; lock.unlock() }
    }

    /// Asked about every millisecond while a wait is blocked, with the seconds waited so far: true cuts the
    /// wait short for a roll call (as on expiry, but the wait goes on when every rank answers). The training
    /// layer answers true for a stop signal received while blocked, which is how mpirun ends a job whose
    /// rank died: the roll call then names the dead rank before mpirun's SIGKILL arrives.
    public var interruption: (@Sendable (Double) -> Bool)? {
        get { lock.lock(); defer { lock.unlock() }; return hook }
        set { lock.lock(); hook = newValue; lock.unlock() }
    }

    /// Seconds since this process was last continued after a stop (SIGSTOP/SIGTSTP, a suspended job), or a
    /// negative number if never; nil: not known. A wait counts its deadline from the later of its start and
    /// that moment: time the process spent stopped is not time the others failed to answer in (a rank stopped
    /// past the deadline and then continued would otherwise take its own stall for theirs).
    public var sinceContinued: (@Sendable () -> Double)? {
        get { lock.lock(); defer { lock.unlock() }; return continued }
        set { lock.lock(); continued = newValue; lock.unlock() }
    }
}

/// A blocking wait ran past its deadline (or was interrupted), and the ranks held a roll call.
///
/// The roll call: a rank whose wait expires tells ranks 0 and 1; each of those asks every other rank to
/// answer, and listens for `window` seconds. Every rank answers from whatever wait it is blocked in (the
/// polling loop answers between two polls), so a rank that does not answer is stopped (SIGSTOP, a hung
/// node), dead, or stuck outside MPI (an endless computation, a hung file system). Rank 0 reports what it
/// heard; when rank 0 itself did not answer rank 1's call, rank 1 reports. Every other rank keeps answering
/// for a while (`Communicator.keepAnswering`) and then ends the job itself only if the reporter has not.
/// Ranks are the world's (`MPI_COMM_WORLD`'s), also when the wait was on a communicator split from it.
public struct CollectiveStall: ClassifiedError, CustomStringConvertible {
    /// A rank or the network went away: a restart may help (69, `EX_UNAVAILABLE`).
    public var failureKind: FailureKind { .unavailable }
    public let phase: String
    /// The deadline that passed.
    public let seconds: Double
    /// World ranks that did not answer the roll call; empty when every rank answered (the ranks then wait
    /// in different collectives, or the network is slower than the deadline), or on a rank that cannot tell.
    public let missing: [Int]
    /// True on the one rank that should print the message and end the job.
    public let reporter: Bool
    /// The world rank that threw this.
    public let rank: Int
    /// True when a stop signal, not the deadline, cut the wait short.
    public let interrupted: Bool

    public init(phase: String, seconds: Double, missing: [Int], reporter: Bool, rank: Int, interrupted: Bool = false) {
        self.phase = phase
        self.seconds = seconds
        self.missing = missing
        self.reporter = reporter
        self.rank = rank
        self.interrupted = interrupted
    }

    /// The seconds a roll call listens for answers: two, or the deadline when that is shorter (tests).
    public static func window(deadline seconds: Double) -> Double { Swift.max(0.05, Swift.min(2, seconds)) }

    /// How long a roll call listens when a stop signal interrupted the wait: mpirun sends SIGKILL a second
    /// after SIGTERM, and every live rank answers within milliseconds.
    public static let interruptedWindow = 0.3

    public var description: String {
        let who = missing.isEmpty ? "" : "\(rankList(missing)) did not answer"
        if interrupted {
            return "a stop signal arrived while waiting in \(phase) for \(who.isEmpty ? "the other ranks" : rankList(missing)): "
                + (missing.count == 1 ? "that rank has" : "those ranks have") + " probably died"
        }
        let head = "\(phase) did not finish within \(Self.seconds(seconds)) s"
        guard reporter else { return head + " (seen by rank \(rank); the reporting rank did not end the job)" }
        if missing.isEmpty {
            return head + ", although every rank answered a roll call: the ranks are waiting in different collectives, "
                + "or the network is slower than the deadline"
        }
        return head + ": \(who) (stopped, dead, or stuck outside MPI)"
    }

    static func seconds(_ s: Double) -> String { s == s.rounded() ? String(Int(s)) : String(format: "%.1f", s) }
}

/// "rank 2" or "ranks 2, 5".
public func rankList(_ ranks: [Int]) -> String {
    (ranks.count == 1 ? "rank " : "ranks ") + ranks.map(String.init).joined(separator: ", ")
}

extension Communicator {
    /// Runs `body` with every blocking wait of this communicator (and those split from it) under
    /// `seconds` (0: no deadline), named `phase` in messages; the previous deadline is restored afterwards.
    /// Throws `CollectiveStall` from the wait that expired.
    public func watched<R>(_ phase: String, seconds: Double, _ body: () throws -> R) rethrows -> R {
        let saved = deadlines.current
        deadlines.current = seconds > 0 ? CollectiveDeadline(seconds: seconds, phase: phase) : nil
        defer { deadlines.current = saved }
        return try body()
    }
}

extension CollectiveStall {
    /// What every rank does after catching a stall, before ending the job: the reporter returns at once (it
    /// prints and ends the job); every other rank answers roll calls for the reporter's whole window plus
    /// a margin, and returns only if the job is still alive then (it then ends the job itself).
    /// `margin`: seconds beyond the window (time for the reporter to print and end the job).
    public func settle(on comm: Communicator, margin: Double = 3) {
        guard !reporter else { return }
        comm.keepAnswering(for: (interrupted ? Self.interruptedWindow : Self.window(deadline: seconds)) + margin)
    }
}
