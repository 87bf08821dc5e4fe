import DMLData

extension JobConfiguration {
    /// Flags that mean something only beside another setting, refused when that setting is absent: a value
    /// nothing reads must not look as if it had been honoured (and it would still enter the checkpoint's
    /// identity, blocking a resume over a flag that changed nothing). A flag counts when it is written
    /// (`givenFlags`, so even its default value is refused where it means nothing) or set to another value than
    /// its default (a `--config` file's settings). Cost: a few comparisons, before anything is read.
    func unusedFlagConflict() -> String? {
        let defaults = JobConfiguration(), o = optimization, d = data
        func set(_ flag: String, _ differs: Bool) -> Bool { differs || givenFlags.contains(flag) }
        if model.kind != .mlp {
            for (flag, differs) in [("hidden", model.hidden != defaults.model.hidden), ("activation", model.activation != defaults.model.activation)] where set(flag, differs) {
                return "--\(flag) shapes the MLP's hidden layers; --model \(model.kind.rawValue) has none: leave out --\(flag), or give --model mlp"
            }
        }
        if o.optimizer != .momentum && set("momentum", o.momentum != defaults.optimization.momentum) {
            return "--momentum needs --optimizer momentum (--optimizer \(o.optimizer.rawValue) keeps no velocity)"
        }
        if o.optimizer != .adam && o.optimizer != .adamw {
            for (flag, differs) in [("beta1", o.beta1 != defaults.optimization.beta1), ("beta2", o.beta2 != defaults.optimization.beta2),
                                    ("adam-eps", o.adamEpsilon != defaults.optimization.adamEpsilon)] where set(flag, differs) {
                return "--\(flag) needs --optimizer adam or adamw"
            }
        }
        if o.schedule != .step {
            for (flag, differs) in [("lr-step-every", o.lrStepEvery != defaults.optimization.lrStepEvery),
                                    ("lr-gamma", o.lrGamma != defaults.optimization.lrGamma)] where set(flag, differs) {
                return "--\(flag) sets the step decay: it needs --lr-schedule step"
            }
        }
        if o.schedule != .cosine && set("lr-min", o.lrMin != defaults.optimization.lrMin) { return "--lr-min is the cosine decay's floor: it needs --lr-schedule cosine" }
        if reduction.balance && (reduction.allreduce != .ring || givenFlags.contains("allreduce")) {
            return "--balance sums the gradient along its own chain of ranks (no allreduce algorithm runs it): leave out --allreduce"
        }
        if d.hashBits != nil && d.features != nil { return "--features fixes a LIBSVM file's width, which --hash-bits replaces with 2^B columns: give one of them" }
        if o.lrSearch != nil && givenFlags.contains("lr") { return "--lr-search chooses the learning rate among its candidates: leave out --lr" }
        if outputs.checkpointDir == nil && set("keep-checkpoints", outputs.keepCheckpoints != defaults.outputs.keepCheckpoints) {
            return "--keep-checkpoints needs --checkpoint-dir"
        }
        // (`--tune-cache` without `--autotune` is honoured: `--allreduce auto` reads the policy cached there.)
        if reduction.allreduce != .auto && reduction.tuneCache != nil { return "--tune-cache holds the policy of --allreduce auto: it needs --allreduce auto" }
        if d.categorical.isEmpty && set("categorical-encoding", d.categoricalEncoding != defaults.data.categoricalEncoding) {
            return "--categorical-encoding says how --categorical columns are encoded: give --categorical"
        }
        if d.path == nil {
            for (flag, differs) in [("label-column", d.labelColumn != defaults.data.labelColumn), ("header", d.header != nil),
                                    ("delimiter", d.delimiter != defaults.data.delimiter), ("features", d.features != nil)] where set(flag, differs) {
                return "--\(flag) describes a --data file; the synthetic task has none"
            }
        } else {
            for (flag, differs) in [("synthetic-rows", d.syntheticRows != defaults.data.syntheticRows),
                                    ("synthetic-test-rows", d.syntheticTestRows != defaults.data.syntheticTestRows),
                                    ("synthetic-features", d.syntheticFeatures != defaults.data.syntheticFeatures),
                                    ("synthetic-classes", d.syntheticClasses != defaults.data.syntheticClasses)] where set(flag, differs) {
                return "--\(flag) shapes the synthetic task, which --data \(d.path!) replaces: leave out --\(flag)"
            }
        }
        return nil
    }
}
