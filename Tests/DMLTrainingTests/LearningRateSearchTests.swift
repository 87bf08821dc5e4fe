import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

final class LearningRateSearchTests: XCTestCase {
    let task = SyntheticClassification(seed: 5, features: 12, classes: 3)

    func testParseAcceptsDistinctPositiveRatesOnly() {
        XCTAssertEqual(LearningRateSearch.parse("0.01, 0.1,1"), [0.01, 0.1, 1])
        for bad in ["", "0.1,", "0.1,-1", "0,1", "a", "0.1,0.1", "inf", "nan"] {
            XCTAssertNil(LearningRateSearch.parse(bad), bad)
        }
    }

    /// Every rank sees the same outcomes; a diverging rate is recorded and never chosen; the choice is the
    /// rate with the lowest validation loss, and the same on 1 and 3 ranks (the batches do not depend on np).
    func testTheSearchPicksTheLowestValidationLossAndSkipsDivergence() throws {
        func search(ranks: Int) throws -> [[LearningRateSearch.Outcome]] {
            try LocalCommunicator.run(size: ranks) { comm in
                let train = self.task.trainingShard(rows: 300, rank: comm.rank, ranks: comm.size)
                let validation = self.task.testShard(rows: 90, rank: comm.rank, ranks: comm.size)
                let model = SoftmaxRegression(features: 12, classes: 3)
                return try LearningRateSearch(candidates: [0.001, 0.5, 3e38]).run(validation: validation) { lr in
                    Trainer(comm: comm, model: model, train: train,
                            config: TrainingConfig(steps: 40, batchSize: 32, learningRate: lr, seed: 5, logEvery: 1000),
                            allreduce: AllreduceKind.ring.make(for: comm))
                }
            }
        }
        let three = try search(ranks: 3)
        for outcomes in three {
            XCTAssertEqual(outcomes.map(\.learningRate), [0.001, 0.5, 3e38])
            XCTAssertEqual(outcomes.map { $0.validation?.loss }, three[0].map { $0.validation?.loss }, "same on every rank")
            XCTAssertNil(outcomes[2].validation, "3e38 diverges")
            XCTAssertNotNil(outcomes[2].failure)
            XCTAssertLessThan(outcomes[1].validation!.loss, outcomes[0].validation!.loss)
            XCTAssertEqual(LearningRateSearch.best(of: outcomes)?.learningRate, 0.5)
        }
        let one = try search(ranks: 1)[0]
        XCTAssertEqual(LearningRateSearch.best(of: one)?.learningRate, 0.5)
        XCTAssertEqual(one[1].validation!.loss, three[0][1].validation!.loss, accuracy: 1e-4)
    }
}
