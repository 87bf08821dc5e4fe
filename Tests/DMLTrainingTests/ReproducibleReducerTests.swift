import XCTest
import DMLComm
import DMLData
import DMLModels
@testable import DMLTraining
import DMLTestSupport

/// `--reproducible` in process (`LocalCommunicator`): the sampler's batches are whole blocks, the same for any
/// number of ranks; the trained parameters have the same bits for np 1…6 (softmax and MLP, shuffled and in
/// order, a partial last block); a NaN on one rank stops every rank at its step.
final class ReproducibleReducerTests: XCTestCase {
    let task = SyntheticClassification(seed: 4, features: 10, classes: 3)

    func testBatchesAreWholeBlocksOfAPermutationOfTheRows() {
        let rows = 64 * 9 + 17, s = BatchSampler(rows: rows, batchSize: 128, seed: 3, blockRows: 64)
        XCTAssertEqual(s.stepsPerEpoch, 5)
        for epoch in 0..<2 {
            var seen: [Int] = []
            for k in 0..<s.stepsPerEpoch {
                let step = epoch * s.stepsPerEpoch + k
                let all = s.localRows(ofStep: step, in: 0..<rows)
                XCTAssertEqual(all.count, s.globalBatchRows(ofStep: step))
                // Runs of whole blocks, each block's rows ascending; the partial block only in the last batch.
                for start in stride(from: 0, to: all.count, by: 64) {
                    let run = Array(all[start..<Swift.min(all.count, start + 64)])
                    XCTAssertEqual(run.first! % 64, 0)
                    XCTAssertEqual(run, Array(run.first! ..< run.first! + run.count))
                    if run.count < 64 { XCTAssertEqual(run.first, 64 * 9) ; XCTAssertEqual(k, s.stepsPerEpoch - 1) }
                }
                // Any cut into shards gives the same rows, in batch order.
                for ranks in [2, 3, 7] {
                    let parts = (0..<ranks).flatMap { s.localRows(ofStep: step, in: ShardPlan(rows: rows, ranks: ranks).range(of: $0)) }
                    XCTAssertEqual(parts.sorted(), all.sorted())
                }
                seen += all
            }
            XCTAssertEqual(seen.sorted(), Array(0..<rows), "epoch \(epoch) visits every row once")
        }
        XCTAssertNotEqual(s.localRows(ofStep: 0, in: 0..<rows), s.localRows(ofStep: 5, in: 0..<rows), "a new order each epoch")
        // Block size 1 is the row-level permutation, unchanged.
        let rowLevel = BatchSampler(rows: rows, batchSize: 128, seed: 3), explicit = BatchSampler(rows: rows, batchSize: 128, seed: 3, blockRows: 1)
        XCTAssertEqual(rowLevel.localRows(ofStep: 2, in: 0..<rows), explicit.localRows(ofStep: 2, in: 0..<rows))
    }

    func train(ranks: Int, model: @escaping @Sendable () -> Model, batch: Int?, shuffle: Bool = true, steps: Int = 12,
               optimizer: OptimizerKind = .adam) throws -> [[Float]] {
        try trainCountingMoves(ranks: ranks, model: model, batch: batch, shuffle: shuffle, steps: steps, optimizer: optimizer).map(\.0)
    }

    /// The trained parameters of every rank, and how many leaves it computed for their holders.
    func trainCountingMoves(ranks: Int, model: @escaping @Sendable () -> Model, batch: Int?, shuffle: Bool = true, steps: Int = 12,
                            optimizer: OptimizerKind = .adam) throws -> [([Float], Int)] {
        try LocalCommunicator.run(size: ranks) { comm -> ([Float], Int) in
            let shard = self.task.trainingShard(rows: 64 * 7 + 23, rank: comm.rank, ranks: comm.size)
            var config = TrainingConfig(steps: steps, batchSize: batch, learningRate: 0.05, seed: 5, logEvery: 1000,
                                        optimizer: OptimizerConfig(kind: optimizer))
            config.reproducibleBlockRows = 64
            config.shuffle = shuffle
            let trainer = Trainer(comm: comm, model: model(), train: shard, config: config, allreduce: RingAllreduce(comm: comm))
            try trainer.run { _ in }
            return (trainer.parameters, (trainer.reducer as! ReproducibleReducer).receivedLeaves)
        }
    }

    func testParametersHaveTheSameBitsForAnyNumberOfRanks() throws {
        let models: [(String, @Sendable () -> Model)] = [
            ("softmax", { SoftmaxRegression(features: 10, classes: 3) }),
            ("mlp", { MLP(features: 10, hidden: [12], classes: 3) }),
            // 563 parameters ≥ 32 × 11: its leaves are balanced over the ranks (rows moved between them).
            ("wide mlp", { MLP(features: 10, hidden: [40], classes: 3) }),
        ]
        for (name, model) in models {
            let balanced = name == "wide mlp"
            XCTAssertEqual(ReproducibleReducer.balances(count: model().layout.count, features: 10), balanced, name)
            for (batch, shuffle) in [(128, true), (64, false), (nil, false)] as [(Int?, Bool)] {
                let reference = try train(ranks: 1, model: model, batch: batch, shuffle: shuffle)[0]
                for p in 2...6 {
                    let replicas = try trainCountingMoves(ranks: p, model: model, batch: batch, shuffle: shuffle)
                    for r in 0..<p {
                        XCTAssertEqual(replicas[r].0.map(\.bitPattern), reference.map(\.bitPattern), "\(name) batch \(batch ?? 0) shuffle \(shuffle) np \(p) rank \(r)")
                    }
                    // Balanced: some leaves computed away from their holders when a batch's 2 leaves lie on one of 2 or 3
                    // ranks (a full batch is even already; at np ≥ 4 they move only when one rank holds both).
                    let moved = replicas.reduce(0) { $0 + $1.1 }
                    if !balanced { XCTAssertEqual(moved, 0, "\(name) np \(p)") }
                    if balanced && batch == 128 && p <= 3 { XCTAssertGreaterThan(moved, 0, "\(name) batch 128 np \(p)") }
                }
            }
        }
    }

    /// A NaN or ∞ in one rank's leaf makes the mean NaN and `gradientIsNonFinite` true on every rank (the guard's
    /// answer without a scan); the next finite step is finite again. np 3, four leaves of 50 values.
    func testANonFiniteLeafValueIsFlaggedOnEveryRank() throws {
        let n = 50, rows = 4 * 64, batch = Array(0..<rows)
        let runs = try LocalCommunicator.run(size: 3) { comm -> [(Bool, Bool)] in
            let reducer = ReproducibleReducer(comm: comm, count: n, collectiveTimeout: 30)
            return try [Float(1), .nan, .infinity, 2].enumerated().map { step, poison in
                let holding = ReproducibleReducer.rowRange(of: comm.rank, ranks: comm.size, rows: rows)
                for group in reducer.begin(step: step + 1, holding: holding, rows: { r in batch.filter { r.contains($0) } }) {
                    for leaf in group.leaves ?? [] {
                        for i in 0..<n { leaf.gradient[i] = Float(i % 7) - 3 }
                        if comm.rank == 1 { leaf.gradient[n / 2] = poison }
                        leaf.gradient[n] = 1
                        leaf.gradient[n + 1] = Float(leaf.rows.count)
                    }
                }
                let mean = try reducer.finish(step: step + 1, globalRows: rows) {}
                return (reducer.gradientIsNonFinite(mean), mean[0..<n].contains { $0.isNaN })
            }
        }
        for (r, run) in runs.enumerated() {
            XCTAssertEqual(run.map(\.0), [false, true, true, false], "rank \(r): flagged")
            XCTAssertEqual(run.map(\.1), [false, true, true, false], "rank \(r): NaN in the mean")
        }
    }

    /// Each rank computes ⌊L/p⌋ or ⌈L/p⌉ leaves, its own first, and no balanced assignment moves fewer.
    func testLeafBalanceComputesEvenSharesMovingTheFewestLeaves() {
        XCTAssertEqual(LeafBalance.assign(holders: [0, 0, 0, 1], ranks: 2), [0, 0, 1, 1])
        XCTAssertEqual(LeafBalance.assign(holders: [1, 0, 1, 1, 1], ranks: 2), [1, 0, 1, 1, 0])
        XCTAssertEqual(LeafBalance.assign(holders: [2, 2, 2, 2], ranks: 3), [2, 2, 0, 1])
        XCTAssertEqual(LeafBalance.assign(holders: [3, 3], ranks: 4), [3, 0])
        var random = TestRandom(seed: 9)
        for _ in 0..<300 {
            let p = Int.random(in: 1...9, using: &random), leaves = Int.random(in: 0...20, using: &random)
            let holders = (0..<leaves).map { _ in Int.random(in: 0..<p, using: &random) }
            let computers = LeafBalance.assign(holders: holders, ranks: p)
            let counts = (0..<p).map { r in computers.filter { $0 == r }.count }
            XCTAssertLessThanOrEqual(counts.max()! - counts.min()!, 1, "\(holders) → \(computers)")
            let held = (0..<p).map { r in holders.filter { $0 == r }.count }
            // The fewest moves: each rank keeps min(held, its share) of its own.
            let kept = zip(holders, computers).filter { $0 == $1 }.count
            XCTAssertEqual(kept, (0..<p).reduce(0) { $0 + Swift.min(held[$1], counts[$1]) }, "\(holders) → \(computers)")
            // Brute force over which ranks compute the extra leaves: no balanced assignment moves fewer.
            let (floor, extra) = leaves.quotientAndRemainder(dividingBy: p)
            let fewest = (0..<(1 << p)).filter { $0.nonzeroBitCount == extra }.map { set in
                (0..<p).reduce(0) { $0 + Swift.max(0, held[$1] - floor - ((set >> $1) & 1)) }
            }.min()!
            XCTAssertEqual(leaves - kept, fewest, "\(holders) → \(computers)")
        }
    }

    func testFixedPointScaleLeavesRoomForEveryLeafAndFlagsNonFiniteValues() {
        for leaves in [1, 2, 3, 64, 1000] {
            for largest: Float in [1e-30, 0.75, 1, 3e5, 3e38] {
                let k = ReproducibleReducer.exponent(Double(largest), leaves: leaves)
                // L values of magnitude `largest`, scaled by 2^k, sum to less than 2^62.
                XCTAssertLessThan(Double(leaves) * Double(largest) * Double(sign: .plus, exponent: k, significand: 1), 0x1p62)
                XCTAssertGreaterThanOrEqual(Double(leaves) * Double(largest) * Double(sign: .plus, exponent: k, significand: 1), 0x1p59)
            }
        }
        var x: [Float] = [1, -5, 2]
        XCTAssertEqual(ReproducibleReducer.largestMagnitude(x, 3), 5)
        x[1] = .nan
        XCTAssertEqual(ReproducibleReducer.largestMagnitude(x, 3), .infinity)
        x[1] = -.infinity
        XCTAssertEqual(ReproducibleReducer.largestMagnitude(x, 3), .infinity)
    }

    /// The scale of a bucket leaves room for every leaf, and keeps at least 56 bits of the largest value's sum.
    func testBucketScaleLeavesRoomForEveryLeaf() {
        for leaves in [1, 2, 3, 64, 1000] {
            for largest: Float in [1e-30, 0.75, 1, 1.5, 2, 3e5, 3e38, Float(bitPattern: 1)] {
                let b = ReproducibleReducer.bucket(Double(largest))
                XCTAssertEqual(b % ReproducibleReducer.bucketBinades, 0)
                XCTAssertLessThan(Double(largest), Double(sign: .plus, exponent: b, significand: 1))
                XCTAssertGreaterThanOrEqual(Double(largest), Double(sign: .plus, exponent: b - ReproducibleReducer.bucketBinades, significand: 1))
                let sum = Double(leaves) * Double(largest) * Double(sign: .plus, exponent: ReproducibleReducer.exponent(bucket: b, leaves: leaves), significand: 1)
                XCTAssertLessThan(sum, 0x1p62, "\(largest) \(leaves)")
                XCTAssertGreaterThanOrEqual(sum, 0x1p56, "\(largest) \(leaves)")
            }
        }
        XCTAssertEqual(ReproducibleReducer.bucket(0), .min)
        XCTAssertEqual(ReproducibleReducer.bucket(.infinity), .max)
        XCTAssertEqual(ReproducibleReducer.bucket(1), 4)
        XCTAssertEqual(ReproducibleReducer.bucket(0.025), -4)
    }

    /// A step quantised with the last step's buckets (one collective) has the bits of the exact path (a fresh
    /// reducer: an allreduce-max first), and a wrong guess — a bucket above or below — falls back to the exact
    /// path: np 1 and 3, four leaves of 1000 values.
    func testTheGuessedScaleGivesTheBitsOfTheExactPath() throws {
        let n = 1000, rows = 4 * 64, batch = Array(0..<rows)
        func step(_ reducer: ReproducibleReducer, rank: Int, ranks: Int, number: Int, magnitude: Float) throws -> [UInt32] {
            let holding = ReproducibleReducer.rowRange(of: rank, ranks: ranks, rows: rows)
            let groups = reducer.begin(step: number, holding: holding) { r in batch.filter { r.contains($0) } }
            for group in groups {
                for leaf in group.leaves ?? [] {
                    let block = group.rows[leaf.rows.lowerBound] / 64, g = leaf.gradient
                    for i in 0..<n { g[i] = Float((block * 7919 + i * 104_729) % 2001 - 1000) / 997 * magnitude }
                    g[n] = Float(block + 1) * magnitude
                    g[n + 1] = Float(leaf.rows.count)
                }
            }
            return try reducer.finish(step: number, globalRows: rows) {}.map(\.bitPattern)
        }
        // Buckets: gradient 4, 4, 8, −4, −4; loss 4, 4, 8, 0, 0. Exact path at steps 1, 3 and 4.
        let magnitudes: [Float] = [1, 1.1, 40, 1.0 / 40, 1.0 / 41], rescaled = [1, 1, 2, 3, 3]
        for ranks in [1, 3] {
            let runs = try LocalCommunicator.run(size: ranks) { comm -> [([UInt32], [UInt32], Int)] in
                let warm = ReproducibleReducer(comm: comm, count: n, collectiveTimeout: 30)
                return try magnitudes.enumerated().map { i, m in
                    let guessed = try step(warm, rank: comm.rank, ranks: comm.size, number: i + 1, magnitude: m)
                    let fresh = try step(ReproducibleReducer(comm: comm, count: n, collectiveTimeout: 30), rank: comm.rank,
                                         ranks: comm.size, number: 1, magnitude: m)
                    return (guessed, fresh, warm.rescaledSteps)
                }
            }
            for (r, run) in runs.enumerated() {
                for (i, (guessed, fresh, count)) in run.enumerated() {
                    XCTAssertEqual(guessed, fresh, "np \(ranks) rank \(r) step \(i + 1)")
                    XCTAssertEqual(count, rescaled[i], "np \(ranks) rank \(r) step \(i + 1)")
                    XCTAssertEqual(guessed, runs[0][i].0, "np \(ranks): ranks agree")
                }
            }
        }
    }
}
