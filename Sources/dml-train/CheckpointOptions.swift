import ArgumentParser

/// Checkpoints, resume and the replica check.
struct CheckpointOptions: ParsableArguments {
    @Option(name: .customLong("checkpoint-dir"),
            help: "Directory for checkpoints (rank 0 creates and writes it; other ranks never touch it, but with --shard-update each writes its part there: then it must be shared by every node).")
    var checkpointDir: String?

    @Option(name: .customLong("checkpoint-every"), help: "Write a checkpoint every N steps, and at the end (default: once per epoch; with a full batch, ten per run).")
    var checkpointEvery: Int?

    @Option(name: .customLong("keep-checkpoints"), help: "Keep the newest K checkpoints, delete older ones (0 keeps all).")
    var keepCheckpoints: Int = 3

    @Flag(help: "Continue from the newest valid checkpoint in the checkpoint directory (start afresh if it has none).")
    var resume = false

    @Flag(name: .customLong("overwrite-checkpoints"),
          help: "Start afresh in a checkpoint directory that already holds checkpoints, deleting them (without it such a directory is refused, so an older run's checkpoints are never pruned or resumed by mistake).")
    var overwriteCheckpoints = false

    @Option(name: .customLong("verify-every"),
            help: "Check every N steps (and at the end) that all ranks hold bit-identical parameters; 0 disables it.")
    var verifyEvery: Int = 50

    func validate() throws {
        if let d = checkpointDir, d.isEmpty { throw ValidationError("--checkpoint-dir must name a directory") }
        if let e = checkpointEvery, e < 0 { throw ValidationError("--checkpoint-every must not be negative (got \(e))") }
        guard keepCheckpoints >= 0 else { throw ValidationError("--keep-checkpoints must not be negative (got \(keepCheckpoints))") }
        guard verifyEvery >= 0 else { throw ValidationError("--verify-every must not be negative (got \(verifyEvery))") }

    }
}
