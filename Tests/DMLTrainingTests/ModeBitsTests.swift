import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

/// The final bits of every mode of the step, pinned: the restructuring of the training step into parts
/// (reducers, hooks, one session loop) must not change a bit of any mode. Each mode trains 3 in-process
/// ranks for a few steps and digests (XXH3) rank 0's parameters and optimizer state.
///
/// The constants were recorded from the code before the restructuring (commit "Tests: the SIGTERM-to-
/// dml-launch job script …", run with `DML_RECORD_BITS=1 swift test --filter ModeBitsTests`, which prints
/// them instead of checking). A deliberate change of the arithmetic (a kernel's summation order) changes
/// them: record them again in that commit and say why.
final class ModeBitsTests: XCTestCase {
    let classification = SyntheticClassification(seed: 11, features: 20, classes: 4)
    let binary = SyntheticClassification(seed: 11, features: 20, classes: 2)

    struct Mode {
        let name: String
        var model: () -> Model
        var task: Int = 0            // 0: 4 classes, 1: 2 classes, 2: regression
        var optimizer = OptimizerConfig(kind: .sgd)
        var batch: Int? = 48
        var schedule: ((Int) -> LearningRateSchedule)?
        var overlap = false
        var bucketBytes = 1 << 20
        var balance = false
        var compress: WireFormat?
        var errorFeedback = false
        var features = false
    }

    var modes: [Mode] {
        [
            Mode(name: "softmax sgd", model: { SoftmaxRegression(features: 20, classes: 4) }),
            Mode(name: "softmax adam decay cosine warmup", model: { SoftmaxRegression(features: 20, classes: 4, weightDecay: 0.01) },
                 optimizer: OptimizerConfig(kind: .adam), schedule: { LearningRateSchedule(base: 0.05, decay: .cosine(minimum: 0.001), warmup: 3, total: $0) }),
            Mode(name: "softmax full batch", model: { SoftmaxRegression(features: 20, classes: 4) }, batch: nil),
            Mode(name: "logistic nesterov", model: { LogisticRegression(features: 20) }, task: 1,
                 optimizer: OptimizerConfig(kind: .momentum, nesterov: true)),
            Mode(name: "linear adamw", model: { LinearRegression(features: 20) }, task: 2,
                 optimizer: OptimizerConfig(kind: .adamw, weightDecay: 0.02)),
            Mode(name: "mlp one bucket", model: { MLP(features: 20, hidden: [16, 8], classes: 4, activation: .relu) },
                 optimizer: OptimizerConfig(kind: .momentum)),
            Mode(name: "mlp buckets", model: { MLP(features: 20, hidden: [16, 8], classes: 4, activation: .tanh) }, bucketBytes: 256),
            Mode(name: "mlp buckets overlap", model: { MLP(features: 20, hidden: [16, 8], classes: 4, activation: .tanh) },
                 overlap: true, bucketBytes: 256),
            Mode(name: "softmax balance", model: { SoftmaxRegression(features: 20, classes: 4) }, balance: true),
            Mode(name: "mlp balance", model: { MLP(features: 20, hidden: [16, 8], classes: 4) }, optimizer: OptimizerConfig(kind: .adam),
                 balance: true),
            Mode(name: "softmax fp16", model: { SoftmaxRegression(features: 20, classes: 4) }, compress: .fp16),
            Mode(name: "mlp bf16 error feedback", model: { MLP(features: 20, hidden: [16, 8], classes: 4) }, compress: .bf16,
                 errorFeedback: true),
            Mode(name: "softmax features adam", model: { SoftmaxRegression(features: 20, classes: 4) }, optimizer: OptimizerConfig(kind: .adam),
                 features: true),
            Mode(name: "logistic features", model: { LogisticRegression(features: 20) }, task: 1, features: true),
            Mode(name: "linear features decay", model: { LinearRegression(features: 20, weightDecay: 0.01) }, task: 2, features: true),
        ]
    }

    static let pinned: [String: String] = [
        "softmax sgd": "7a76cf505bcd51aa",
        "softmax adam decay cosine warmup": "8327e30982470d6d",
        "softmax full batch": "68f32919e2c5be25",
        "logistic nesterov": "eacdb6aeb88ba9ae",
        "linear adamw": "31f8d5e82cfeb4ab",
        "mlp one bucket": "adf692daf1f83fe1",
        "mlp buckets": "15aad9d60587b22b",
        "mlp buckets overlap": "15aad9d60587b22b",
        "softmax balance": "3ca28b151e6f38bb",
        "mlp balance": "62705a30cb422e93",
        "softmax fp16": "3ab96538625aae02",
        "mlp bf16 error feedback": "dcfcfd920df8cac1",
        "softmax features adam": "5600a9d1b63f2577",
        "logistic features": "35f89f2d2e50f5d7",
        "linear features decay": "2b92bee95f7d6105",
    ]

    func data(_ task: Int, rank: Int, ranks: Int) -> Dataset {
        let shard = (task == 1 ? binary : classification).trainingShard(rows: 300, rank: rank, ranks: ranks)
        return task == 2 ? classification.regressionShard(shard, testSplit: false) : shard
    }

    func digest(_ mode: Mode) throws -> String {
        let steps = 14
        return try LocalCommunicator.run(size: 3) { comm -> String in
            var config = TrainingConfig(steps: steps, batchSize: mode.batch, learningRate: 0.05, seed: 11, logEvery: 1000,
                                        optimizer: mode.optimizer, schedule: mode.schedule?(steps))
            config.overlap = mode.overlap
            config.bucketBytes = mode.bucketBytes
            config.balance = mode.balance
            if mode.features {
                let whole = self.data(mode.task, rank: 0, ranks: 1)
                let columns = ShardPlan(rows: 20, ranks: comm.size).range(of: comm.rank)
                let model = mode.model()
                let slice = FeatureSlice(kind: FeatureSlice.Kind(rawValue: model.kind)!, features: 20, columns: columns,
                                         classes: whole.classes, weightDecay: mode.name.contains("decay") ? 0.01 : 0)
                let t = FeaturePartitionedTrainer(comm: comm, slice: slice, train: whole.columns(columns), config: config,
                                                  allreduce: RingAllreduce(comm: comm))
                try t.run { _ in }
                return Checksum.hex(Checksum.hash(try t.outputParameters()))
            }
            let ring = RingAllreduce(comm: comm)
            let hook = mode.compress.map { ReductionHook.compressed($0, exact: ring, errorFeedback: mode.errorFeedback, comm: comm) }
            let t = Trainer(comm: comm, model: mode.model(), train: self.data(mode.task, rank: comm.rank, ranks: comm.size),
                            config: config, allreduce: ring, hook: hook)
            try t.run { _ in }
            return Checksum.hex(t.stateChecksum)
        }[0]
    }

    func testEveryModeKeepsItsBits() throws {
        let record = ProcessInfo.processInfo.environment["DML_RECORD_BITS"] == "1"
        for mode in modes {
            let d = try digest(mode)
            if record {
                print("            \"\(mode.name)\": \"\(d)\",")
            } else {
                XCTAssertEqual(d, Self.pinned[mode.name], mode.name)
            }
        }
    }
}
