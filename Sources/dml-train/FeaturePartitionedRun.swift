import DMLComm
import DMLData
import DMLModels
import DMLTraining
import Foundation

/// `--partition features`: every rank holds every row and a share of the feature columns, with the matching
/// columns of the weights (see `FeaturePartitionedTrainer`). Same batches, schedule and output file as the
/// row-partitioned run, which it equals up to float rounding.
extension DMLTrain {
    /// The flags that `--partition features` cannot honour, each refused with its reason.
    func featurePartitionConflicts() -> String? {
        if ![.linear, .logistic, .softmax].contains(modelOptions.model) {
            return "--partition features trains linear, logistic and softmax models (their scores are sums over features); --model \(modelOptions.model.rawValue) needs --partition rows"
        }
        if checkpoints.checkpointDir != nil {
            return "--partition features does not write checkpoints (each rank holds different weights); use --partition rows with --checkpoint-dir"
        }
        if training.lrSearch != nil { return "--lr-search needs --partition rows" }
        if metrics != nil { return "--metrics needs --partition rows" }
        if compress != .none { return "--compress compresses gradients, which --partition features does not exchange; use --partition rows" }
        return nil
    }

    func runFeaturePartitioned(_ comm: Communicator) throws {
        let seed = training.seed
        let (loaded, columns) = try data.loadColumns(comm: comm, seed: seed)
        let train = loaded.train
        let features = columns.upperBound == 0 ? 0 : try comm.allreduced(Int64(columns.upperBound), op: .max)
        // The whole model, for its checks, its name and its output layout.
        let model = try comm.agreeing {
            try modelOptions.make(features: Int(features), classes: train.classes, weightDecay: training.modelWeightDecay)
        }
        let kind = FeatureSlice.Kind(rawValue: model.kind)!
        let slice = FeatureSlice(kind: kind, features: Int(features), columns: columns, classes: train.classes,
                                 weightDecay: training.modelWeightDecay)

        let batch: Int? = { if case let .rows(n) = training.batchSize { return Swift.min(n, train.globalRows) }; return nil }()
        let stepsPerEpoch = batch.map { (train.globalRows + $0 - 1) / $0 } ?? 1
        let totalSteps = training.steps ?? training.epochs * stepsPerEpoch
        let config = TrainingConfig(steps: totalSteps, batchSize: batch, learningRate: training.lr, seed: seed,
                                    logEvery: logEvery ?? Swift.max(1, totalSteps / 10),
                                    optimizer: training.optimizerConfig, schedule: training.schedule(totalSteps: totalSteps))
        let trainer = FeaturePartitionedTrainer(comm: comm, slice: slice, train: train, config: config,
                                                allreduce: allreduce.make(for: comm))
        if comm.rank == 0 {
            let d = Int(features), p = comm.size
            let widths = d % p == 0 ? "\(d / p)" : "\(d / p)–\(d / p + 1)"
            print("dml-train: \(model.kind) on \(loaded.description), \(p) rank\(p == 1 ? "" : "s") partitioned by features "
                  + "(\(widths) columns each), "
                  + "global batch \(batch.map(String.init) ?? "full"), \(totalSteps) steps, \(training.optimizerConfig.description), "
                  + "lr \(config.schedule.description), allreduce \(allreduce.rawValue)")
        }
        let printer = ProgressPrinter()
        comm.deadlines.current = collectiveTimeout > 0 ? CollectiveDeadline(seconds: collectiveTimeout, phase: "training") : nil
        let started = Date()
        try trainer.run { r in if comm.rank == 0 { printer.report(r) } }
        let seconds = Date().timeIntervalSince(started)
        comm.deadlines.current = CollectiveDeadline(seconds: collectiveTimeout + 2 * seconds / Swift.max(1, Double(totalSteps) / Double(stepsPerEpoch)),
                                                    phase: "the final evaluation and output after step \(trainer.step)")

        let trainEval = try trainer.evaluate(train)
        let validationEval = try loaded.validation.map { try trainer.evaluate($0) }
        let testEval = try loaded.test.map { try trainer.evaluate($0) }
        let parameters = try trainer.fullParameters()
        guard !parameters.contains(where: { !$0.isFinite }) else {
            throw TrainingFailure("training diverged: the parameters are no longer finite (learning rate \(training.lr)); try a lower --lr")
        }
        if comm.rank == 0 {
            printDone(steps: totalSteps, seconds: seconds, train: trainEval, validation: validationEval, test: testEval)
        }
        try writeOutput(parameters: parameters, model: model, step: trainer.step,
                        extra: loaded.metadata.merging(["partition": "features"]) { mine, _ in mine }, comm: comm)
        try endTogether(comm)
    }
}
