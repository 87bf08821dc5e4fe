import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

final class TrainerTests: XCTestCase {
    let task = SyntheticClassification(seed: 2, features: 20, classes: 3)

    func train(ranks: Int, batch: Int?, steps: Int, algorithm: AllreduceKind = .ring) throws -> [[Float]] {
        try LocalCommunicator.run(size: ranks) { comm -> [Float] in
            let shard = self.task.trainingShard(rows: 203, rank: comm.rank, ranks: comm.size)
            let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 20, classes: 3), train: shard,
                                  config: TrainingConfig(steps: steps, batchSize: batch, learningRate: 0.3, seed: 2, logEvery: 1000),
                                  allreduce: algorithm.make(for: comm))
            try trainer.run { _ in }
            return trainer.parameters
        }
    }

    func testReplicasAreBitIdenticalAfterTraining() throws {
        for algorithm in AllreduceKind.allCases {
            let replicas = try train(ranks: 3, batch: 16, steps: 30, algorithm: algorithm)
            for r in 1..<3 {
                XCTAssertEqual(replicas[r].map(\.bitPattern), replicas[0].map(\.bitPattern), "\(algorithm) rank \(r)")
            }
        }
    }

    func testFullBatchTrainingIsTheSameOnAnyNumberOfRanks() throws {
        let reference = try train(ranks: 1, batch: nil, steps: 20)[0]
        for p in [2, 3, 4, 8] {
            let params = try train(ranks: p, batch: nil, steps: 20)[0]
            XCTAssertLessThan(maxRelativeDifference(params, reference), 1e-5, "p=\(p)")
        }
    }

    func testMiniBatchPathDoesNotDependOnTheNumberOfRanks() throws {
        let reference = try train(ranks: 1, batch: 32, steps: 25)[0]
        for p in [2, 5] {
            XCTAssertLessThan(maxRelativeDifference(try train(ranks: p, batch: 32, steps: 25)[0], reference), 1e-4, "p=\(p)")
        }
    }

    func testLossFallsAndEvaluationCoversEveryRow() throws {
        let results = try LocalCommunicator.run(size: 2) { comm -> (Double, Double, Evaluation) in
            let shard = self.task.trainingShard(rows: 203, rank: comm.rank, ranks: comm.size)
            let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 20, classes: 3), train: shard,
                                  config: TrainingConfig(steps: 60, batchSize: 32, learningRate: 0.3, seed: 2, logEvery: 1000),
                                  allreduce: RingAllreduce(comm: comm))
            let first = try trainer.trainStep().loss
            try trainer.run { _ in }
            let last = try trainer.trainStep().loss
            return (first, last, try trainer.evaluate(shard))
        }
        let (first, last, eval) = results[0]
        XCTAssertEqual(first, log(3), accuracy: 1e-5, "zero weights predict uniformly")
        XCTAssertLessThan(last, 0.7 * first)
        XCTAssertEqual(eval.rows, 203)
        XCTAssertGreaterThan(eval.accuracy ?? 0, 0.8)
    }

    func testANaNOnOneRankStopsEveryRankBeforeTheUpdate() throws {
        let outcomes = try LocalCommunicator.run(size: 3) { comm -> (String, Int, Bool) in
            let shard = self.task.trainingShard(rows: 203, rank: comm.rank, ranks: comm.size)
            let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 20, classes: 3), train: shard,
                                  config: TrainingConfig(steps: 10, batchSize: 16, learningRate: 0.3, seed: 2, logEvery: 1000,
                                                         optimizer: OptimizerConfig(kind: .adam)),
                                  allreduce: RingAllreduce(comm: comm), faults: try FaultPlan(parsing: "nan:rank=1:step=4"))
            var before: [Float] = []
            do {
                try trainer.run(report: { _ in }, afterStep: { before = trainer.parameters })
                return ("no error", trainer.step, false)
            } catch let f as TrainingFailure {
                return (f.message, trainer.step, trainer.parameters == before && before.allSatisfy(\.isFinite))
            }
        }
        for (message, step, unchanged) in outcomes {
            XCTAssertTrue(message.contains("training diverged at step 4") && message.contains("lower learning rate"), message)
            XCTAssertEqual(step, 3, "steps 1-3 done, step 4 refused")
            XCTAssertTrue(unchanged, "the bad update was not applied")
        }
    }

    func testProgressIsReportedAtTheLogIntervalAndAtLeastEveryReportInterval() throws {
        func reportedSteps(logEvery: Int, interval: Double) throws -> [Int] {
            try LocalCommunicator.run(size: 1) { comm -> [Int] in
                var config = TrainingConfig(steps: 12, batchSize: 16, learningRate: 0.3, seed: 2, logEvery: logEvery)
                config.reportInterval = interval
                let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 20, classes: 3),
                                      train: self.task.trainingShard(rows: 64, rank: 0, ranks: 1), config: config,
                                      allreduce: RingAllreduce(comm: comm))
                var steps: [Int] = []
                try trainer.run(report: { steps.append($0.step) }, afterStep: { if trainer.step == 5 { Thread.sleep(forTimeInterval: 0.3) } })
                return steps
            }[0]
        }
        XCTAssertEqual(try reportedSteps(logEvery: 4, interval: 3600), [4, 8, 12])
        // Step 6 comes 0.3 s after the report at step 4: the clock reports it although 6 is off the interval.
        XCTAssertEqual(try reportedSteps(logEvery: 4, interval: 0.2), [4, 6, 8, 12])
    }

    func testDurationsReadAsAPersonWritesThem() {
        XCTAssertEqual(ProgressPrinter.duration(42.4), "42s")
        XCTAssertEqual(ProgressPrinter.duration(754), "12m34s")
        XCTAssertEqual(ProgressPrinter.duration(3 * 3600 + 5 * 60 + 9), "3h05m")
        XCTAssertEqual(ProgressPrinter.duration(2 * 86_400 + 7 * 3600), "2d07h")
        XCTAssertEqual(ProgressPrinter.duration(.infinity), "?")
        XCTAssertEqual(ProgressPrinter.duration(1e300), "?")
    }
}
