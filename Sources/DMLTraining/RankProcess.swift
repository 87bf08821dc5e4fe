import Foundation
import DMLComm
import DMLStatus

/// The life of one rank's process in a job (`dml-train`, `dml-predict`): MPI started under a timer, the body,
/// its error reported the one way (`JobExit`), MPI finalised under a timer.
public enum RankProcess {
    /// Runs `body` on this rank and returns the process's exit status: 0, the error's (`JobExit.report`: one
    /// message, or `MPI_Abort` for a failure only this rank saw), or 69 when MPI does not start.
    ///
    /// `MPI_Init` and `MPI_Finalize` have no form that can be polled, so a `Backstop` ends the process if they
    /// do not return within 5 × and 1 × `collectiveTimeout` + 10 s (0: no timer); mpirun then ends the others.
    /// `stopSignals`: install the stop-signal handlers before `MPI_Init` (so a signal during start-up is kept)
    /// and again after it (the MPI library may replace them), for a job that stops cleanly on them.
    public static func run(program: String, collectiveTimeout: Double, stopSignals: Bool = false,
                           _ body: (MPICommunicator) throws -> Void) -> Int32 {
        if stopSignals { Preemption.install() }
        let startup = collectiveTimeout * 5
        let initialising = Backstop(seconds: startup,
                                    message: "\(program): error: MPI start-up did not finish within \(Int(startup)) s (5 × --collective-timeout): a rank stopped answering")
        let comm: MPICommunicator
        do { comm = try MPICommunicator.initializeWorld() } catch {
            JobExit.writeToStandardError("\(program): error: cannot start MPI: \(error)")
            return FailureKind.unavailable.exitStatus
        }
        initialising.disarm()
        if stopSignals { Preemption.install() }
        defer {
            // The ranks have met in a polled barrier just before (the job's last collective); a timer covers the rest.
            let finalizing = Backstop(seconds: collectiveTimeout + 10, message: "\(program): error: MPI_Finalize did not return within \(Int(collectiveTimeout + 10)) s")
            MPICommunicator.finalize()
            finalizing.disarm()
        }
        do {
            try body(comm)
            return 0
        } catch {
            return JobExit.report(error, comm: comm, program: program)
        }
    }
}
