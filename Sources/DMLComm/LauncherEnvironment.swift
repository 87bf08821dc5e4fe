import Foundation

/// What the launcher (mpirun, srun) tells a process about itself through the environment, readable
/// before `MPI_Init`: used so that only rank 0 prints a command-line error.
public enum LauncherEnvironment {
    /// True when a launcher started this process (its stdout is then a relay, often a pseudo-terminal
    /// even when the job's output goes to a file).
    public static var isLaunched: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"].contains { env[$0] != nil }
    }

    /// This process's rank in the job, or 0 when not launched by a known launcher.
    public static var rank: Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"] {
            if let v = env[key], let r = Int(v) { return r }
        }
        return 0
    }

    /// False when this process was started with a command line of its own (OpenMPI's MPMD form,
    /// `mpirun -np 1 A : -np 1 B`: an app context other than rank 0's); true otherwise, rank 0's arguments.
    public static var sharesRankZerosArguments: Bool {
        let env = ProcessInfo.processInfo.environment
        guard let contexts = env["OMPI_NUM_APP_CTX"].flatMap({ Int($0) }), contexts > 1 else { return true }
        return env["OMPI_MCA_orte_app_num"] == "0"
    }
}
