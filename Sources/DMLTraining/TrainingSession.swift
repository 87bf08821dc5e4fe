import Foundation
import DMLStatus
import DMLComm
import DMLData

/// What a run does around the training steps: configuration agreement, resume, checkpoints, replica
/// checks, evaluation and metrics. Plain values; the command line fills them in.
public struct SessionOptions {
    /// Where rank 0 keeps checkpoints; nil writes none.
    public var checkpointDirectory: String?
    /// A checkpoint every N steps (and always one at the end); 0: only at the end.
    public var checkpointEvery: Int = 0
    /// Checkpoints kept (older ones deleted); 0 keeps all.
    public var keepCheckpoints: Int = 3
    /// Continue from the newest valid checkpoint in `checkpointDirectory` (a fresh start when it has none).
    public var resume = false
    /// A fresh run (no `resume`) may delete the checkpoints already in `checkpointDirectory`; without it,
    /// a directory holding checkpoints is refused.
    public var overwriteCheckpoints = false
    /// Early stopping: stop when the validation loss has not improved for this many evaluations.
    public var earlyStopping: Int?
    /// Called on every rank (collective) when the validation loss reaches a new lowest value after step `s`:
    /// the job writes the best model (`NAME.best.safetensors` beside `--output NAME.safetensors`).
    public var onBest: ((Int) throws -> Void)?
    /// Called on every rank (collective) after the final evaluation, before the metrics' `final` line: the job
    /// writes its outputs there, so a `final` line says the run's outputs exist (a failed write leaves none).
    public var writeOutputs: (() throws -> Void)?
    /// Replica check every N steps (and at the end); 0 disables it.
    public var verifyEvery: Int = 0
    /// Evaluate on the test set every N epochs (and always at the end); 0: only at the end.
    public var evalEvery: Int = 1
    /// Rank 0's JSON-lines metrics file; nil writes none.
    public var metricsPath: String?
    /// The fields a checkpoint records and a resume checks (`JobConfiguration.identity`); the session adds
    /// the trainer's derived fields (`Trainer.derivedIdentity`) and the data's checksum.
    public var identity: [String: String]
    /// A canonical text of the whole parsed configuration: all ranks must have the same.
    public var configuration: String

    public init(identity: [String: String], configuration: String) {
        self.identity = identity
        self.configuration = configuration
    }
}

/// The outcome of a session.
public struct SessionResult {
    public let train: Evaluation
    public let test: Evaluation?
    public let validation: Evaluation?
    public let seconds: Double
    /// The checkpoint the run continued from, if it resumed.
    public let resumedFrom: (step: Int, path: String)?
    /// Early stopping: the step training stopped at (nil: it ran to the end), and the best validation loss
    /// and the step after which it was reached.
    public var stoppedEarly: Int?
    public var best: (loss: Double, step: Int)?
}

/// Early stopping's state: the lowest validation loss so far, its step, and the evaluations since. Kept in
/// checkpoints (`session.*`), so a resumed run stops where the uninterrupted one would.
struct EarlyStopping {
    let patience: Int
    var bestLoss = Double.infinity
    var bestStep = 0
    var since = 0

    /// Records a validation loss after `step`; returns whether it is a new best.
    mutating func record(_ loss: Double, step: Int) -> Bool {
        if loss < bestLoss {
            bestLoss = loss
            bestStep = step
            since = 0
            return true
        }
        since += 1
        return false
    }

    var exhausted: Bool { since >= patience }

    var state: [String: String] {
        ["best_loss": String(bestLoss.bitPattern, radix: 16), "best_step": String(bestStep), "evaluations_since_best": String(since)]
    }

    mutating func restore(_ state: [String: String]) {
        if let b = state["best_loss"].flatMap({ UInt64($0, radix: 16) }) { bestLoss = Double(bitPattern: b) }
        if let s = state["best_step"].flatMap({ Int($0) }) { bestStep = s }
        if let n = state["evaluations_since_best"].flatMap({ Int($0) }) { since = n }
    }
}

/// Thrown by the step loop's after-step hook when early stopping ends the run (caught by the session).
struct StoppedEarly: Error {}

/// Runs a `Trainer` to its last step with everything around it. Collective: every rank calls `run` with
/// the same options. Only rank 0 touches the checkpoint directory and the metrics file; the other ranks
/// receive a resumed state by broadcast. `log` and `warn` are called on rank 0 only.
public final class TrainingSession {
    public let trainer: TrainingStrategy
    public let test: Dataset?
    /// The held-out part of the training rows (`--validation-fraction`), evaluated like the test set.
    public let validation: Dataset?
    public var options: SessionOptions
    private let log: (String) -> Void
    private let warn: (String) -> Void
    private var comm: Communicator { trainer.comm }
    /// The training data's checksum (`Checksum.dataset`), once `run` has started.
    public private(set) var dataChecksum: UInt64?
    /// `--collective-timeout`: the deadline of every collective phase (plus room for work a phase does).
    private var timeout: Double { trainer.config.collectiveTimeout }

    public init(trainer: TrainingStrategy, test: Dataset?, validation: Dataset? = nil, options: SessionOptions,
                log: @escaping (String) -> Void = { print($0) },
                warn: @escaping (String) -> Void = { FileHandle.standardError.write(("warning: " + $0 + "\n").data(using: .utf8)!) }) {
        self.trainer = trainer
        self.test = test
        self.validation = validation
        self.options = options
        self.log = log
        self.warn = warn
    }

    /// Checks that every rank parsed the same configuration. Collective; one allreduce of `size` Int64.
    public func checkConfigurationAgreement() throws {
        let (differing, _) = try comm.ranksDiffering(in: Checksum.hash(options.configuration))
        guard !differing.isEmpty else { return }
        let good = (0..<comm.size).first { !differing.contains($0) }!
        throw TrainingFailure("the ranks do not run the same configuration: \(rankList(differing)) parsed different flags "
                              + "or environment from rank \(good). Give every rank the same command line", kind: .configuration)
    }

    public func run(progress: ProgressPrinter? = nil) throws -> SessionResult {
        try checkConfigurationAgreement()
        let rank0 = comm.rank == 0
        let store = options.checkpointDirectory.map { CheckpointStore(directory: $0, keep: options.keepCheckpoints) }
        let notes = try comm.agreeing { () -> [String] in
            guard rank0 else { return [] }
            var notes: [String] = []
            if let note = try store?.prepare() { notes.append(note) }
            if let m = options.metricsPath { try AtomicFile.checkWritable(m) }
            if let store, !options.resume, let note = try store.startFresh(overwrite: options.overwriteCheckpoints) { notes.append(note) }
            return notes
        }
        notes.forEach(log)
        var identity = options.identity.merging(trainer.derivedIdentity) { _, derived in derived }
        // The training data's identity: in checkpoints (a resume checks it) and in the model file.
        let checksum = try trainer.dataChecksum()
        dataChecksum = checksum
        identity["derived.data_checksum"] = Checksum.hex(checksum)
        var resumedFrom: (step: Int, path: String)?
        var early = options.earlyStopping.map { EarlyStopping(patience: $0) }
        var stoppedEarly: Int?
        if options.resume, let store = store {
            resumedFrom = try resume(from: store, identity: identity) { early?.restore($0) }
        }
        let metrics = try comm.agreeing {
            rank0 ? try options.metricsPath.map { try MetricsLog(path: $0, resumedStep: resumedFrom?.step) } : nil
        }

        // The start-up is over: from here every collective not watched more closely waits at most the
        // collective timeout.
        comm.deadlines.current = timeout > 0 ? CollectiveDeadline(seconds: timeout, phase: "training after step \(trainer.step)") : nil
        let total = trainer.config.steps
        let stepsPerEpoch = trainer.sampler.stepsPerEpoch
        var lastCheckpoint = resumedFrom?.step ?? -1
        var lastSpeed = 0.0
        let printer = progress.map { ProgressPrinter(interactive: $0.interactive, firstStep: trainer.step) }
        let started = Date()
        let firstStep = trainer.step

        func saveCheckpoint() throws {
            try trainer.hooks.outside("checkpoint", step: trainer.step) { try saveCheckpointNow() }
        }

        func saveCheckpointNow() throws {
            try trainer.checkParametersFinite()
            let sharded = try trainer.checkpointParts(identity: identity)
            var snapshot = try sharded?.snapshot ?? trainer.checkpoint(identity: identity)
            if let early { snapshot.sessionState = early.state }
            let faults = trainer.hooks.faults, step = trainer.step
            var fault: AtomicFile.Fault?
            if faults.fires(.writefail, rank: comm.rank, step: step) { fault = .fail(afterBytes: 100) }
            if faults.fires(.hang, rank: comm.rank, step: step, at: .checkpoint) {
                // Rank 0 stalls half-way through the file (a temporary file exists), the others on arrival; with a
                // sharded update every rank writes a part, and the rank stalls half-way through its own.
                if rank0 || sharded != nil { fault = .stall(afterBytes: 100, hang: { faults.hang() }) } else { faults.hang() }
            }
            // The other ranks wait while rank 0 writes: the deadline allows for the write (at 50 MB/s).
            let bytes = Double(4 * (snapshot.parameters.count + snapshot.optimizerState.count))
            let path = try comm.watched("the checkpoint after step \(trainer.step)", seconds: timeout + bytes / 50e6) {
                guard let sharded else { return try comm.agreeing { rank0 ? try store!.save(snapshot, fault: fault) : "" } }
                // A sharded update: every rank writes its part in parallel, then rank 0 the manifest (with every part's
                // checksum) once all are durable; a failed part stops every rank before the manifest exists.
                var partsAgreed = false, manifestWritten = false
                do {
                    let sum = try comm.agreeing { try store!.savePart(sharded.part, fault: fault) }
                    let sums = try comm.allgathered(Int64(bitPattern: sum)).map { UInt64(bitPattern: $0) }
                    partsAgreed = true
                    return try comm.agreeing { () -> String in
                        guard rank0 else { return "" }
                        let p = try store!.saveManifest(snapshot, shards: sharded.shards, copies: sharded.copies, checksums: sums)
                        manifestWritten = true
                        return p
                    }
                } catch {
                    // An incomplete set is no checkpoint, but a complete one must never lose a part. Before the
                    // checksums were agreed, each rank removes the part it may have written. After, only rank 0
                    // knows whether the manifest exists: a rank that stalled in the last agreement (stopped, swapped
                    // out) and fails late keeps its part, which rank 0's manifest may list; rank 0 removes the
                    // set's parts only when its own manifest write failed. Parts a killed rank 0 leaves without a
                    // manifest are removed by the next job's `CheckpointStore.prepare`.
                    let manifest = store!.path(step: sharded.part.step)
                    if !partsAgreed {
                        unlink(CheckpointPart.path(manifest: manifest, rank: comm.rank, parts: comm.size))
                    } else if rank0 && !manifestWritten && !FileManager.default.fileExists(atPath: manifest) {
                        CheckpointStore.remove(manifest)
                    }
                    throw error
                }
            }
            lastCheckpoint = trainer.step
            if rank0 && printer?.interactive == false { log("checkpoint \(path)") }
        }

        do {
        try trainer.run(report: { r in
            lastSpeed = r.samplesPerSecond
            if rank0 { printer?.report(r) }
            self.log(to: metrics, [("step", r.step), ("epoch", r.epoch + 1), ("loss", r.loss),
                                   ("lr", self.trainer.usesLearningRate ? r.learningRate : nil), ("samples_per_s", r.samplesPerSecond)]
                                   + r.figures.map { ($0.name, $0.value) })
        }, afterStep: {
            let s = self.trainer.step
            if self.options.verifyEvery > 0 && s % self.options.verifyEvery == 0 { try self.trainer.verifyReplicas() }
            if self.test != nil || self.validation != nil, self.options.evalEvery > 0, s % stepsPerEpoch == 0, s < total,
               (s / stepsPerEpoch) % self.options.evalEvery == 0 {
                let e = try self.test.map { try self.trainer.evaluate($0) }
                let v = try self.validation.map { try self.trainer.evaluate($0) }
                self.log(to: metrics, ["event": "eval", "step": s, "epoch": s / stepsPerEpoch, "task": self.task, "loss": self.trainer.lastLoss,
                                 "lr": self.trainer.usesLearningRate ? self.trainer.config.schedule.lr(at: s - 1) : nil, "samples_per_s": lastSpeed,
                                 "test_loss": e?.loss, "test_accuracy": e?.accuracy,
                                 "validation_loss": v?.loss, "validation_accuracy": v?.accuracy])
                if let v, early != nil {
                    if early!.record(v.loss, step: s) { try self.options.onBest?(s) }
                    if early!.exhausted {
                        if store != nil && lastCheckpoint != s { try saveCheckpoint() }
                        throw StoppedEarly()
                    }
                }
            }
            if store != nil && self.options.checkpointEvery > 0 && s % self.options.checkpointEvery == 0 { try saveCheckpoint() }
        })
        } catch is StoppedEarly {
            stoppedEarly = trainer.step
        } catch var stop as Preempted {
            // Every rank stopped at the same step boundary: save it, then let the caller exit (status 75).
            if let store, trainer.step > 0 {
                if lastCheckpoint != trainer.step { try saveCheckpoint() }
                stop.checkpoint = store.path(step: trainer.step)
            }
            throw stop
        }
        let seconds = Date().timeIntervalSince(started)
        if let at = stoppedEarly, rank0, let early {
            log("early stopping after step \(at): the validation loss has not improved for \(early.patience) evaluation\(early.patience == 1 ? "" : "s") "
                + "(lowest \(String(format: "%.6f", early.bestLoss)) after step \(early.bestStep))")
        }
        // DML_FAULT=hang at the step after the last: a rank that stalls in the final phase.
        if trainer.hooks.faults.fires(.hang, rank: comm.rank, step: trainer.step + 1) { trainer.hooks.faults.hang() }
        if options.verifyEvery > 0 { try trainer.verifyReplicas() }
        try trainer.checkParametersFinite()
        if store != nil && lastCheckpoint != trainer.step { try saveCheckpoint() }

        let trainEval = try trainer.evaluate(trainer.train)
        let testEval = try test.map { try trainer.evaluate($0) }
        let validationEval = try validation.map { try trainer.evaluate($0) }
        if let v = validationEval, early != nil, stoppedEarly == nil, early!.record(v.loss, step: trainer.step) {
            try options.onBest?(trainer.step)
        }
        try options.writeOutputs?()
        let s = trainer.step
        // The last line, then every rank learns whether rank 0 could write it (or an earlier line).
        log(to: metrics, ["event": "final", "step": s, "epoch": s > 0 ? trainer.sampler.epoch(ofStep: s - 1) + 1 : 0, "task": task,
                         "loss": trainer.lastLoss, "lr": s > 0 && trainer.usesLearningRate ? trainer.config.schedule.lr(at: s - 1) : nil,
                         "samples_per_s": seconds > 0 ? Double(stepRows(from: firstStep, to: s)) / seconds : 0,
                         "train_loss": trainEval.loss, "train_accuracy": trainEval.accuracy,
                         "test_loss": testEval?.loss, "test_accuracy": testEval?.accuracy,
                         "validation_loss": validationEval?.loss, "validation_accuracy": validationEval?.accuracy, "seconds": seconds])
        try comm.agree(error: trainer.hooks.failureToAgree)
        var result = SessionResult(train: trainEval, test: testEval, validation: validationEval, seconds: seconds, resumedFrom: resumedFrom)
        result.stoppedEarly = stoppedEarly
        result.best = early.map { ($0.bestLoss, $0.bestStep) }
        return result
    }

    /// What the losses are (a metrics reader labels its axes by it): a classifier's cross-entropy, or a
    /// regression's squared error.
    private var task: String { trainer.train.classes == 0 ? "regression" : "classification" }

    /// Rank 0 appends a metrics line; a failed write (a full disk) does not stop rank 0 alone in the middle
    /// of the steps: the next step's gate (or the end of the run) agrees on it and every rank stops with
    /// its message (exit 74). Lines after a failed one are not attempted.
    private func log(to metrics: MetricsLog?, _ fields: KeyValuePairs<String, Any?>) {
        log(to: metrics, fields.map { ($0.key, $0.value) })
    }

    private func log(to metrics: MetricsLog?, _ fields: [(key: String, value: Any?)]) {
        guard let metrics, trainer.hooks.failureToAgree == nil else { return }
        do { try metrics.append(fields) } catch { trainer.hooks.failureToAgree = error }
    }

    private func stepRows(from a: Int, to b: Int) -> Int {
        (a..<b).reduce(0) { $0 + trainer.sampler.globalBatchRows(ofStep: $1) }
    }

    /// Rank 0 finds the newest valid checkpoint and checks it against this run; all ranks get its bytes
    /// by broadcast and continue from it. Returns nil (a fresh start) when the directory has none.
    private func resume(from store: CheckpointStore, identity: [String: String],
                        session restore: ([String: String]) -> Void) throws -> (step: Int, path: String)? {
        var bytes: [UInt8] = []
        var path = ""
        let total = trainer.config.steps
        try comm.agreeing {
            guard comm.rank == 0 else { return }
            guard let found = try store.newestValid(warn: warn) else {
                // Nothing to continue: this is a fresh run of its own.
                _ = try store.startFresh(overwrite: false)
                return
            }
            if let why = found.checkpoint.mismatch(with: identity) {
                throw TrainingFailure("cannot resume from \(found.path): it was written by a different configuration: \(why). "
                                      + "Use the same flags, or another --checkpoint-dir to start afresh", kind: .configuration)
            }
            if found.checkpoint.step > total {
                throw TrainingFailure("cannot resume from \(found.path): it is at step \(found.checkpoint.step), past this run's last step (\(total)), "
                                      + "so it belongs to a longer run. Resume with --steps \(found.checkpoint.step) or more, or start afresh "
                                      + "(another --checkpoint-dir, or --overwrite-checkpoints without --resume)", kind: .configuration)
            }
            store.adopt(found.checkpoint)
            bytes = found.bytes
            path = found.path
        }
        var count = [Int64(bytes.count)]
        try count.withUnsafeMutableBufferPointer { try comm.broadcast($0, root: 0) }
        guard count[0] > 0 else {
            if comm.rank == 0 { log("no checkpoint in \(store.directory): starting from step 0") }
            return nil
        }
        if comm.rank != 0 { bytes = [UInt8](repeating: 0, count: Int(count[0])) }
        try bytes.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        let checkpoint = try Checkpoint.decode(bytes)
        try trainer.restore(checkpoint)
        restore(checkpoint.sessionState)
        if comm.rank == 0 {
            log(checkpoint.step == total ? "\(path) is already at the last step (\(total)): nothing left to train; evaluating and writing the outputs"
                                         : "resuming from \(path) (step \(checkpoint.step))")
        }
        return (checkpoint.step, path)
    }
}
