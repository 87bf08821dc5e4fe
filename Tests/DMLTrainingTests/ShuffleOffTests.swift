import XCTest
import DMLComm
import DMLData
import DMLKernels
import DMLModels
import DMLTraining
import DMLTestSupport

/// `--shuffle off` (`TrainingConfig.shuffle = false`): batch k of every epoch is global rows k·B ..< (k+1)·B,
/// each rank's part used in place, on any number of ranks.
final class ShuffleOffTests: XCTestCase {
    let task = SyntheticClassification(seed: 5, features: 12, classes: 3)
    let rows = 203, batch = 32

    func config(steps: Int, batch: Int?, shuffle: Bool) -> TrainingConfig {
        var c = TrainingConfig(steps: steps, batchSize: batch, learningRate: 0.3, seed: 4, logEvery: 1000)
        c.shuffle = shuffle
        return c
    }

    /// `data` as CSR rows when `sparse` (the same values).
    func rowsAs(_ data: Dataset, sparse: Bool) -> Dataset {
        guard sparse else { return data }
        return Dataset(features: data.features, classes: data.classes, globalRows: data.globalRows, firstRow: data.firstRow,
                       csr: CSRMatrix(dense: data.x, rows: data.rows, columns: data.features), y: data.y)
    }

    func train(ranks: Int, steps: Int, shuffle: Bool, sparse: Bool = false) throws -> [[Float]] {
        try LocalCommunicator.run(size: ranks) { comm -> [Float] in
            let shard = self.rowsAs(self.task.trainingShard(rows: self.rows, rank: comm.rank, ranks: comm.size), sparse: sparse)
            let trainer = Trainer(comm: comm, model: SoftmaxRegression(features: 12, classes: 3), train: shard,
                                  config: self.config(steps: steps, batch: self.batch, shuffle: shuffle),
                                  allreduce: AllreduceKind.ring.make(for: comm))
            try trainer.run { _ in }
            return trainer.parameters
        }
    }

    /// The rows `range` of the task's training set as a one-rank data set.
    func slice(_ range: Range<Int>) -> Dataset {
        let all = task.trainingShard(rows: rows, rank: 0, ranks: 1)
        let f = all.features
        return Dataset(features: f, classes: all.classes, globalRows: range.count, firstRow: 0,
                       x: Array(all.x[range.lowerBound * f ..< range.upperBound * f]), y: Array(all.y[range]))
    }

    /// One rank, 25 steps (3 epochs and a part; the last batch of each epoch is 11 rows): the same bits as
    /// plain SGD steps taken one by one, each a full-batch step over a copy of the next consecutive rows
    /// (wrapping at the end of the data), started from the previous step's parameters. Dense and CSR rows: the
    /// rows used in place give the bits of copied (gathered) rows.
    func testOneRankTakesConsecutiveRowsInFileOrder() throws {
        for sparse in [false, true] { try checkFileOrder(sparse: sparse) }
    }

    func checkFileOrder(sparse: Bool) throws {
        let steps = 25
        let shuffled = try train(ranks: 1, steps: steps, shuffle: true, sparse: sparse)[0]
        let inOrder = try train(ranks: 1, steps: steps, shuffle: false, sparse: sparse)[0]
        let reference = try LocalCommunicator.run(size: 1) { comm -> [Float] in
            let model = SoftmaxRegression(features: 12, classes: 3)
            var w: [Float]?
            let perEpoch = (self.rows + self.batch - 1) / self.batch
            for s in 0..<steps {
                let k = s % perEpoch
                let range = k * self.batch ..< min(self.rows, (k + 1) * self.batch)
                let one = Trainer(comm: comm, model: model, train: self.rowsAs(self.slice(range), sparse: sparse), config: self.config(steps: 1, batch: nil, shuffle: false),
                                  allreduce: AllreduceKind.ring.make(for: comm))
                if let w { try one.start(from: w) }
                try one.run { _ in }
                w = one.parameters
            }
            return w!
        }[0]
        XCTAssertEqual(inOrder.map(\.bitPattern), reference.map(\.bitPattern), "sparse \(sparse): file order, consecutive batches, the same bits")
        XCTAssertNotEqual(shuffled.map(\.bitPattern), inOrder.map(\.bitPattern), "sparse \(sparse): shuffle on visits another order")
    }

    /// On 2 and 3 ranks (batches cut across the shard boundaries) the same math as on one, up to the rounding of
    /// the allreduce, with bit-identical replicas.
    func testAnyNumberOfRanksGivesTheSameMathAndIdenticalReplicas() throws {
        let reference = try train(ranks: 1, steps: 25, shuffle: false)[0]
        for p in [2, 3] {
            let replicas = try train(ranks: p, steps: 25, shuffle: false)
            XCTAssertLessThan(maxRelativeDifference(replicas[0], reference), 1e-4, "p=\(p)")
            for r in 1..<p { XCTAssertEqual(replicas[r].map(\.bitPattern), replicas[0].map(\.bitPattern), "p=\(p) rank \(r)") }
        }
    }

    /// The sampler's batches with shuffle off: consecutive positions, each rank's part a run inside its shard.
    func testSamplerCutsConsecutiveRuns() {
        let sampler = BatchSampler(rows: rows, batchSize: batch, seed: 4, shuffle: false)
        let plan = ShardPlan(rows: rows, ranks: 3)
        for step in 0..<(2 * sampler.stepsPerEpoch) {
            let k = step % sampler.stepsPerEpoch
            let whole = (0..<3).flatMap { sampler.localRows(ofStep: step, in: plan.range(of: $0)) }
            XCTAssertEqual(whole, Array(k * batch ..< min(rows, (k + 1) * batch)), "step \(step)")
        }
    }
}
