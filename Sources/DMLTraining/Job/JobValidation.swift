import DMLModels

extension JobConfiguration {
    /// The first combination of options this job cannot honour, as one message naming the flags; nil when
    /// every option will be honoured. Checked before anything is read or trained (`dml-train` turns it into
    /// a usage error, 64), so no option is ever silently ignored. `CombinationTests` enumerates the
    /// combinations of the step's variations and checks each is either refused here or has its effect.
    public func conflict() -> String? {
        let r = reduction, d = data, o = outputs
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
        if let patience = optimization.earlyStopping {
            if patience < 1 { return "--early-stopping must be at least 1 evaluation (got \(patience))" }
            if d.validationFraction == 0 { return "--early-stopping watches the validation loss: give --validation-fraction" }
            if o.evalEvery == 0 { return "--early-stopping needs evaluations during the run: --eval-every must be at least 1" }
            if o.output == nil { return "--early-stopping keeps the best model beside --output (best.safetensors): give --output" }
            if optimization.lrSearch != nil { return "--early-stopping and --lr-search both use the validation split: give one of them" }
        }
        return nil
    }
}
