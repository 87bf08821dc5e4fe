import ArgumentParser
import DMLComm
import DMLData

/// Where the training and test rows come from. Without `--data`, the built-in synthetic task.
struct DataOptions: ParsableArguments {
    @Option(name: .customLong("synthetic-rows"), help: "Training rows of the synthetic task.")
    var syntheticRows: Int = 16384

    @Option(name: .customLong("synthetic-test-rows"), help: "Test rows of the synthetic task (0: no test set).")
    var syntheticTestRows: Int = 4096

    @Option(name: .customLong("synthetic-features"), help: "Features per row of the synthetic task.")
    var syntheticFeatures: Int = 784

    @Option(name: .customLong("synthetic-classes"), help: "Classes of the synthetic task.")
    var syntheticClasses: Int = 10

    @Option(name: .customLong("synthetic-target"),
            help: "Target of the synthetic task: classification (labels) or regression (a noisy linear target, for --model linear).")
    var syntheticTarget: SyntheticTarget = .classification

    enum SyntheticTarget: String, ExpressibleByArgument, CaseIterable { case classification, regression }

    func validate() throws {
        guard syntheticRows > 0 else { throw ValidationError("--synthetic-rows must be at least 1 (got \(syntheticRows))") }
        guard syntheticTestRows >= 0 else { throw ValidationError("--synthetic-test-rows must not be negative") }
        guard syntheticFeatures > 0 else { throw ValidationError("--synthetic-features must be at least 1") }
        guard syntheticClasses >= 2 else { throw ValidationError("--synthetic-classes must be at least 2") }
    }

    /// This rank's shards of the training and (optional) test sets, and a one-line description for the log.
    /// Collective: every rank must call it; a problem on any rank is thrown on all (`AgreedFailure`).
    func load(comm: Communicator, seed: UInt64) throws -> (train: Dataset, test: Dataset?, description: String) {
        try comm.agree(comm.size > syntheticRows
            ? "\(comm.size) ranks but only \(syntheticRows) training rows (--synthetic-rows): every rank needs at least one row"
            : nil)
        let task = SyntheticClassification(seed: seed, features: syntheticFeatures, classes: syntheticClasses)
        var train = task.trainingShard(rows: syntheticRows, rank: comm.rank, ranks: comm.size)
        var test = syntheticTestRows > 0 ? task.testShard(rows: syntheticTestRows, rank: comm.rank, ranks: comm.size) : nil
        if syntheticTarget == .regression {
            train = task.regressionShard(train, testSplit: false)
            test = test.map { task.regressionShard($0, testSplit: true) }
            return (train, test, "the synthetic regression task (\(syntheticRows) rows × \(syntheticFeatures) features)")
        }
        return (train, test, "the synthetic task (\(syntheticRows) rows × \(syntheticFeatures) features, \(syntheticClasses) classes)")
    }
}
