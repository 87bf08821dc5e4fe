import DMLData
import DMLKernels
import DMLModels

extension JobConfiguration {
    /// The first combination of options this job cannot honour, as one message naming the flags; nil when
    /// every option will be honoured. Checked before anything is read or trained (`dml-train` turns it into
    /// a usage error, 64), so no option is ever silently ignored. `CombinationTests` enumerates the
    /// combinations of the step's variations and checks each is either refused here or has its effect.
    public func conflict() -> String? {
        let r = reduction, d = data, o = outputs
        if let t = threads, let why = KernelThreads.problem(t) { return "--threads " + why }
        if let files = d.filesConflict { return files }
        if givenFlags.contains("label-column"), let path = d.path {
            let format = d.format ?? DataFormat.infer(fromPath: path)
            if d.labels != nil || d.h5Labels != nil || format == .libsvm {
                return "--label-column picks the label among a file's columns, but \(path)'s labels are "
                    + (format == .libsvm ? "the first field of each LIBSVM line" : d.labels != nil ? "in --labels \(d.labels!)" : "the dataset --h5-labels \(d.h5Labels!)")
                    + ": leave out --label-column"
            }
        }
        if r.errorFeedback && r.compress == nil { return "--error-feedback needs --compress fp16 or bf16" }
        if r.autotune && r.allreduce != .auto { return "--autotune needs --allreduce auto" }
        if r.balance && r.compress != nil { return "--balance sums gradients in its own fixed order: it cannot be combined with --compress" }
        if r.balance && d.partition == .features { return "--balance moves rows: it needs --partition rows" }
        if r.allreduce == .sparse {
            // The sparse reducer sends (position, value) pairs of the touched coordinates in Float32, in one list.
            if r.compress != nil { return "--allreduce sparse sends the touched coordinates as exact Float32 (position, value) pairs: it cannot be combined with --compress" }
            if r.balance { return "--allreduce sparse cannot be combined with --balance: the chain sums whole gradients in block order" }
            if r.overlap { return "--allreduce sparse reduces the whole gradient's touched coordinates in one list after the backward pass: it cannot be combined with --overlap" }
            if d.partition == .features { return "--allreduce sparse reduces the touched coordinates of a replicated gradient; --partition features exchanges scores, not gradients: use --partition rows" }
        }
        if r.overlap {
            if model.kind != .mlp {
                return "--overlap overlaps an MLP's layer buckets with its backward pass; --model \(model.kind.rawValue) computes its gradient in one stage (use --model mlp, or leave out --overlap)"
            }
            if r.compress != nil { return "--overlap reduces layer buckets, but a 16-bit wire (--compress) takes the whole gradient in one message: give one of them" }
            if r.balance { return "--overlap cannot be combined with --balance: the chain sums the gradient in block order after the backward pass" }
        }
        if d.partition == .features {
            if ![.linear, .logistic, .softmax].contains(model.kind) {
                return "--partition features trains linear, logistic and softmax models (their scores are sums over features); --model \(model.kind.rawValue) needs --partition rows"
            }
            if r.compress != nil { return "--compress compresses gradients, which --partition features does not exchange; use --partition rows" }
        }
        if let b = d.hashBits {
            if !(1...31).contains(b) { return "--hash-bits must be in 1…31 (got \(b))" }
            if d.path == nil { return "--hash-bits hashes the feature indices of a LIBSVM --data file; the synthetic task has none" }
        }
        if d.sparse == .on {
            if d.path == nil { return "--sparse on keeps LIBSVM rows as CSR; the synthetic task is dense (give --data FILE.svm)" }
            if d.standardize { return "--standardize centres every feature, which would make CSR rows dense: give --sparse off or auto, or leave out --standardize" }
            if d.partition == .features { return "--partition features cuts dense columns: give --sparse off or auto with it" }
            if r.balance { return "--balance moves dense rows between ranks: give --sparse off or auto with it" }
        }
        if let refusal = fullBatchConflict() { return refusal }
        if let refusal = shardUpdateConflict() { return refusal }
        if let refusal = reproducibleConflict() { return refusal }
        if let refusal = unusedFlagConflict() { return refusal }
        if d.maxMemory != nil && d.cacheDir == nil { return "--max-memory streams the training rows from a shard cache: give --cache-dir DIR for it" }
        if d.cacheDir != nil {
            if d.path == nil { return "--cache-dir caches the parsed rows of a --data file; the synthetic task has none" }
            if d.standardize { return "--standardize rescales the rows in memory: it cannot be combined with streamed rows (--cache-dir, --max-memory)" }
            if d.validationFraction > 0 || optimization.lrSearch != nil {
                return "--validation-fraction and --lr-search split the rows in memory: they cannot be combined with streamed rows (--cache-dir, --max-memory); give a --test-data file instead"
            }
            if d.partition == .features { return "--partition features transposes the rows in memory: use --partition rows with --cache-dir" }
            if r.balance { return "--balance moves rows between ranks in memory: it cannot be combined with streamed rows (--cache-dir)" }
        }
        if o.overwriteCheckpoints && o.resume { return "--overwrite-checkpoints starts afresh and --resume continues: give one of them" }
        if o.overwriteCheckpoints && o.checkpointDir == nil { return "--overwrite-checkpoints needs --checkpoint-dir" }
        if o.resume && o.checkpointDir == nil { return "--resume needs --checkpoint-dir" }
        if o.checkpointEvery != nil && o.checkpointDir == nil { return "--checkpoint-every needs --checkpoint-dir" }
        if optimization.nesterov && optimization.optimizer != .momentum { return "--nesterov needs --optimizer momentum" }
        if optimization.optimizer != .adagrad && (givenFlags.contains("adagrad-eps") || optimization.adagradEpsilon != JobConfiguration().optimization.adagradEpsilon) {
            return "--adagrad-eps needs --optimizer adagrad"
        }
        if !(optimization.adagradEpsilon > 0 && optimization.adagradEpsilon.isFinite) { return "--adagrad-eps must be a positive number (got \(optimization.adagradEpsilon))" }
        if let patience = optimization.earlyStopping {
            if patience < 1 { return "--early-stopping must be at least 1 evaluation (got \(patience))" }
            if d.validationFraction == 0 { return "--early-stopping watches the validation loss: give --validation-fraction" }
            if o.evalEvery == 0 { return "--early-stopping needs evaluations during the run: --eval-every must be at least 1" }
            if o.output == nil { return "--early-stopping keeps the best model beside --output (NAME.best.safetensors): give --output" }
            if optimization.lrSearch != nil { return "--early-stopping and --lr-search both use the validation split: give one of them" }
        }
        return nil
    }

    /// `--optimizer lbfgs|newton` and its flags: a convex model, rows partitioned, and none of the flags that
    /// mean nothing to a full-batch method that chooses its own steps (`fullBatchMeaningless`), whether set to a
    /// value other than the default or written at all (`givenFlags`); `--tol` and `--lbfgs-memory` only with
    /// the methods that use them.
    func fullBatchConflict() -> String? {
        let o = optimization, defaults = JobConfiguration()
        func given(_ flag: String) -> Bool { givenFlags.contains(flag) }
        guard o.optimizer.isFullBatch else {
            if given("tol") || o.tol != defaults.optimization.tol { return "--tol is the stopping tolerance of --optimizer lbfgs or newton; --optimizer \(o.optimizer.rawValue) runs --epochs or --steps" }
            if given("lbfgs-memory") || o.lbfgsMemory != defaults.optimization.lbfgsMemory { return "--lbfgs-memory needs --optimizer lbfgs" }
            return nil
        }
        let name = "--optimizer \(o.optimizer.rawValue)"
        if o.lbfgsMemory < 1 { return "--lbfgs-memory must be at least 1 (got \(o.lbfgsMemory))" }
        if !(o.tol >= 0 && o.tol.isFinite) { return "--tol must be a non-negative number (got \(o.tol))" }
        if model.kind == .mlp {
            return "\(name) minimises a convex objective (--model linear, logistic or softmax, with --weight-decay as its L2 term); the MLP's loss is not convex: use --optimizer sgd, momentum, adam or adamw"
        }
        if data.partition == .features { return "\(name) needs --partition rows (the rows of each rank, every feature)" }
        if o.optimizer == .newton && (given("lbfgs-memory") || o.lbfgsMemory != defaults.optimization.lbfgsMemory) { return "--lbfgs-memory needs --optimizer lbfgs" }
        if given("batch-size") && o.batchSize != nil || o.batchSize != nil && o.batchSize != defaults.optimization.batchSize {
            return "\(name) is a full-batch method: every iteration uses every training row, so --batch-size means nothing to it (leave it out, or give --batch-size full)"
        }
        for (flag, set) in fullBatchMeaningless(defaults) where set || given(flag) {
            return "--\(flag) means nothing to \(name), a full-batch method that chooses its own steps (no learning rate, no batches, no per-step gradient exchange): leave it out"
        }
        return nil
    }

    /// The flags a full-batch method has no use for, each with whether this configuration sets it to something
    /// other than its default.
    func fullBatchMeaningless(_ defaults: JobConfiguration) -> [(flag: String, set: Bool)] {
        let o = optimization, d = defaults.optimization, r = reduction
        return [("lr", o.lr != d.lr), ("lr-search", o.lrSearch != nil), ("momentum", o.momentum != d.momentum), ("nesterov", o.nesterov),
                ("beta1", o.beta1 != d.beta1), ("beta2", o.beta2 != d.beta2), ("adam-eps", o.adamEpsilon != d.adamEpsilon),
                ("lr-schedule", o.schedule != d.schedule), ("lr-step-every", o.lrStepEvery != d.lrStepEvery),
                ("lr-gamma", o.lrGamma != d.lrGamma), ("lr-min", o.lrMin != d.lrMin), ("warmup", o.warmup != d.warmup),
                ("overlap", r.overlap), ("compress", r.compress != nil), ("error-feedback", r.errorFeedback), ("balance", r.balance),
                ("shuffle", o.shuffle != d.shuffle)]
    }
}
