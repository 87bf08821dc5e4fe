import XCTest
import DMLComm
import DMLData
import DMLModels
@testable import DMLTraining
import DMLTestSupport

/// The sparse reducer (`--allreduce sparse`, and `auto` by density): the same parameter bits as the flat
/// reducer over `rd` with the dense update, replicas identical, untouched coordinates exactly +0 and re-zeroed
/// only where they were touched, declared coordinates (`touched`) and found ones alike, the choice under
/// `auto`, the models' coordinate maps, and the refusals.
final class SparseReducerTests: XCTestCase {
    let task = SyntheticClassification(seed: 5, features: 64, classes: 3)

    /// A shard whose rows are zero outside a few columns (about 1 in 10, by a hash of the global row and the
    /// column), so each batch touches a different part of the weights.
    func sparseShard(rank: Int, ranks: Int, rows: Int = 240, task: SyntheticClassification? = nil, oneIn: UInt64 = 10) -> Dataset {
        var shard = (task ?? self.task).trainingShard(rows: rows, rank: rank, ranks: ranks)
        for r in 0..<shard.rows {
            let global = UInt64(shard.firstRow + r)
            for j in 0..<shard.features where (global &* 0x9E37_79B9 ^ UInt64(j) &* 0x85EB_CA6B) % oneIn != 0 {
                shard.x[r * shard.features + j] = 0
            }
        }
        return shard
    }

    struct Run {
        let parameters: [UInt32]
        let supports: [Int?]
    }

    func train(ranks: Int, kind: AllreduceKind, optimizer: OptimizerConfig = OptimizerConfig(), model: @escaping () -> Model,
               dense: Bool = false, steps: Int = 12, wide: Bool = false) throws -> [Run] {
        let wideTask = SyntheticClassification(seed: 6, features: 2000, classes: 3)
        return try LocalCommunicator.run(size: ranks, timeout: 60) { comm -> Run in
            let shard = dense ? self.task.trainingShard(rows: 240, rank: comm.rank, ranks: comm.size)
                : wide ? self.sparseShard(rank: comm.rank, ranks: comm.size, task: wideTask, oneIn: 200) : self.sparseShard(rank: comm.rank, ranks: comm.size)
            let trainer = Trainer(comm: comm, model: model(), train: shard,
                                  config: TrainingConfig(steps: steps, batchSize: wide ? 8 : 24, learningRate: 0.3, seed: 3, logEvery: 1000, optimizer: optimizer),
                                  allreduce: kind.make(for: comm), note: { _ in })
            var supports: [Int?] = []
            for _ in 0..<steps {
                _ = try trainer.trainStep()
                supports.append(trainer.reducer.reducedSupport?.count)
            }
            return Run(parameters: trainer.parameters.map(\.bitPattern), supports: supports)
        }
    }

    func testSparseReducerGivesTheFlatReducersBitsOverRdForEveryOptimizer() throws {
        let optimizers: [OptimizerConfig] = [OptimizerConfig(), OptimizerConfig(kind: .momentum), OptimizerConfig(kind: .adam),
                                             OptimizerConfig(kind: .adamw, weightDecay: 0.01), OptimizerConfig(kind: .sgd, weightDecay: 0.01)]
        for p in 1...4 {
            for optimizer in optimizers {
                let sparse = try train(ranks: p, kind: .sparse, optimizer: optimizer) { SoftmaxRegression(features: 64, classes: 3) }
                let flat = try train(ranks: p, kind: .rd, optimizer: optimizer) { SoftmaxRegression(features: 64, classes: 3) }
                for r in 0..<p {
                    XCTAssertEqual(sparse[r].parameters, flat[0].parameters, "p=\(p) \(optimizer.description) rank \(r): sparse ≠ flat over rd")
                    XCTAssertEqual(sparse[r].parameters, sparse[0].parameters, "p=\(p) \(optimizer.description): replicas differ")
                }
                // The reduction was sparse: a support smaller than the gradient at every step (biases and a few
                // columns), and the flat reducer reports none.
                let count = 64 * 3 + 3
                XCTAssertTrue(sparse[0].supports.allSatisfy { $0 != nil && $0! < count && $0! >= 3 }, "p=\(p): \(sparse[0].supports)")
                XCTAssertTrue(flat[0].supports.allSatisfy { $0 == nil })
            }
        }
    }

    func testOtherModelsAndAnL2PenaltyGiveTheSameBitsToo() throws {
        let models: [(String, () -> Model)] = [
            ("logistic", { LogisticRegression(features: 64) }), ("linear", { LinearRegression(features: 64) }),
            ("softmax+L2", { SoftmaxRegression(features: 64, classes: 3, weightDecay: 0.05) }),
            ("mlp", { MLP(features: 64, hidden: [5], classes: 3) }),
        ]
        for (name, model) in models {
            let sparse = try train(ranks: 3, kind: .sparse, model: model, steps: 6)
            let flat = try train(ranks: 3, kind: .rd, model: model, steps: 6)
            for r in 0..<3 { XCTAssertEqual(sparse[r].parameters, flat[0].parameters, "\(name) rank \(r)") }
        }
    }

    /// The reducer alone on synthetic gradients: declared coordinates and found ones give the flat reducer's
    /// buffer bits over rd; off the union every coordinate is +0; a coordinate touched in one step and not the
    /// next is +0 again (re-zeroed at the union only).
    func testDeclaredAndFoundCoordinatesGiveFlatBitsAndAreReZeroed() throws {
        let n = 5000
        for p in 1...4 {
            for declare in [false, true] {
                let out = try LocalCommunicator.run(size: p, timeout: 60) { comm -> [([UInt32], [UInt32], [Int32])] in
                    let sparse = ReducerKind.sparse(auto: nil).make(comm: comm, model: SoftmaxRegression(features: n / 5 - 1, classes: 5),
                                                                    hook: .plain(SparseAllreduce(comm: comm)), collectiveTimeout: 30, note: { _ in })
                    let flat = FlatReducer(comm: comm, count: n, hook: .plain(RecursiveDoublingAllreduce(comm: comm)), collectiveTimeout: 30)
                    var rng = TestRandom(seed: UInt64(comm.rank * 31 + p))
                    var results: [([UInt32], [UInt32], [Int32])] = []
                    for step in 1...4 {
                        // Power-law coordinates: a few hot ones on every rank, a tail that differs.
                        var set = Set<Int32>()
                        for _ in 0..<(step == 3 ? 0 : 60) { set.insert(Int32(Swift.min(n - 1, Int(pow(Double.random(in: 0..<1, using: &rng), 3) * Double(n))))) }
                        let coords = set.sorted()
                        let vals = coords.map { _ in Float.random(in: -2...2, using: &rng) }
                        var buffers: [UnsafeMutableBufferPointer<Float>] = []
                        for reducer in [sparse, flat] as [GradientReducer] {
                            let group = reducer.begin(step: step, holding: 0..<1) { _ in [0] }[0]
                            for (c, v) in zip(coords, vals) { group.buffer[Int(c)] = v }
                            group.buffer[n] = 1.5
                            group.buffer[n + 1] = Float(comm.rank + 1)
                            XCTAssertEqual(reducer.wantsTouchedCoordinates, reducer === sparse)
                            if declare { reducer.touched(coords) }
                            buffers.append(try reducer.finish(step: step, globalRows: 0) {})
                        }
                        let support = Array(sparse.reducedSupport!)
                        results.append((buffers[0].map(\.bitPattern), buffers[1].map(\.bitPattern), support))
                    }
                    return results
                }
                for r in 0..<p {
                    for (s, (sparseBits, flatBits, support)) in out[r].enumerated() {
                        XCTAssertEqual(sparseBits, flatBits, "p=\(p) declared \(declare) rank \(r) step \(s + 1)")
                        XCTAssertEqual(support, out[0][s].2)
                        let off = Set(0..<n).subtracting(support.map { Int($0) })
                        XCTAssertTrue(off.allSatisfy { sparseBits[$0] == 0 }, "p=\(p) step \(s + 1): a coordinate off the union is not +0")
                    }
                    XCTAssertEqual(out[r][2].2, [], "step 3 touches nothing: an empty union")
                }
            }
        }
    }

    func testAutoChoosesSparseForSparseDataAndDenseForDenseData() throws {
        let model = { SoftmaxRegression(features: 64, classes: 3) as Model }
        // 2000 features, 1 in 200 non-zero, 4 rows per rank: about 2·(3·40 + 3) of 6003 coordinates touched.
        let wide = { SoftmaxRegression(features: 2000, classes: 3) as Model }
        let sparse = try train(ranks: 2, kind: .auto, model: wide, steps: 3, wide: true)
        XCTAssertTrue(sparse[0].supports.allSatisfy { $0 != nil }, "sparse rows: \(sparse[0].supports)")
        XCTAssertEqual(sparse[0].parameters, try train(ranks: 2, kind: .sparse, model: wide, steps: 3, wide: true)[0].parameters)
        // The 64-feature rows with 1 in 10 non-zero touch most of the weights in a batch of 24: dense.
        XCTAssertTrue(try train(ranks: 2, kind: .auto, model: model, steps: 2)[0].supports.allSatisfy { $0 == nil })
        let dense = try train(ranks: 2, kind: .auto, model: model, dense: true, steps: 3)
        XCTAssertTrue(dense[0].supports.allSatisfy { $0 == nil }, "dense rows: \(dense[0].supports)")
        XCTAssertEqual(dense[1].parameters, dense[0].parameters)
        // Dense under auto is the flat reducer over auto's algorithm: today's bits.
        let flat = try LocalCommunicator.run(size: 2) { comm -> [UInt32] in
            let trainer = Trainer(comm: comm, model: model(), train: self.task.trainingShard(rows: 240, rank: comm.rank, ranks: 2),
                                  config: TrainingConfig(steps: 3, batchSize: 24, learningRate: 0.3, seed: 3, logEvery: 1000),
                                  allreduce: AllreduceKind.auto.make(for: comm), hook: .plain(AllreduceKind.auto.make(for: comm)), note: { _ in })
            XCTAssertNil(trainer.reducer.reducedSupport)
            try trainer.run { _ in }
            return trainer.parameters.map(\.bitPattern)
        }
        XCTAssertEqual(dense[0].parameters, flat[0])
    }

    func testSelectionModel() {
        let s = SparseSelection(maxDensity: 0.1)
        XCTAssertEqual(SparseSelection.exchanges(ranks: 1), 1)
        XCTAssertEqual(SparseSelection.exchanges(ranks: 2), 1)
        XCTAssertEqual(SparseSelection.exchanges(ranks: 6), 4)
        XCTAssertEqual(SparseSelection.exchanges(ranks: 8), 3)
        XCTAssertTrue(s.prefersSparse(touched: 100, dimension: 1000, ranks: 2))
        XCTAssertFalse(s.prefersSparse(touched: 101, dimension: 1000, ranks: 2))
        XCTAssertFalse(s.prefersSparse(touched: 100, dimension: 1000, ranks: 4))
        XCTAssertFalse(s.prefersSparse(touched: 5000, dimension: 1000, ranks: 2))
    }

    /// `gradientCoordinates` covers every coordinate a batch that is zero outside the columns makes
    /// non-zero, and everything else is +0 in bits (not −0).
    func testModelsTouchOnlyTheCoordinatesTheirColumnsMapTo() {
        let features = 30, rows = 7
        let columns: [Int32] = [2, 3, 11, 29]
        var rng = TestRandom(seed: 9)
        var x = [Float](repeating: 0, count: rows * features)
        for r in 0..<rows { for j in columns where Bool.random(using: &rng) || r == 0 { x[r * features + Int(j)] = Float.random(in: -2...2, using: &rng) } }
        let y = (0..<rows).map { Float($0 % 3) }
        let models: [Model] = [LinearRegression(features: features), LogisticRegression(features: features),
                               SoftmaxRegression(features: features, classes: 3), MLP(features: features, hidden: [4, 3], classes: 3),
                               SoftmaxRegression(features: features, classes: 3, weightDecay: 0.1)]
        for model in models {
            var w = [Float](repeating: 0, count: model.layout.count)
            w.withUnsafeMutableBufferPointer { model.initialize($0, seed: 4) }
            var g = [Float](repeating: 0, count: model.layout.count)
            let yy = model.isClassifier && model.outputs == 1 ? y.map { $0 > 0 ? 1 : 0 } : y
            _ = x.withUnsafeBufferPointer { xp in
                yy.withUnsafeBufferPointer { yp in
                    model.accumulateGradient(parameters: w, batch: Batch(x: xp.baseAddress!, y: yp.baseAddress!, rows: rows, features: features), into: &g)
                }
            }
            let coords = columns.withUnsafeBufferPointer { model.gradientCoordinates(touchingColumns: $0) }
            XCTAssertEqual(coords, coords.sorted())
            XCTAssertEqual(Set(coords).count, coords.count)
            let listed = Set(coords.map { Int($0) })
            for i in 0..<g.count where !listed.contains(i) {
                XCTAssertEqual(g[i].bitPattern, 0, "\(model.kind) coordinate \(i) is \(g[i]), not +0")
            }
            XCTAssertTrue(coords.contains { g[Int($0)] != 0 }, model.kind)
            if (model as? L2Penalized)?.weightDecay ?? 0 == 0, model.kind != "mlp" {
                XCTAssertEqual(coords.count, model.outputs * columns.count + model.outputs, "\(model.kind): units × columns + biases")
            }
        }
    }

    func testFlagsThatCannotCombineWithSparseAreRefused() {
        func conflict(_ change: (inout JobConfiguration) -> Void) -> String? {
            var c = JobConfiguration()
            c.reduction.allreduce = .sparse
            change(&c)
            return c.conflict()
        }
        XCTAssertNil(conflict { _ in })
        XCTAssertEqual(conflict { $0.reduction.compress = .fp16 },
                       "--allreduce sparse sends the touched coordinates as exact Float32 (position, value) pairs: it cannot be combined with --compress")
        XCTAssertEqual(conflict { $0.reduction.balance = true },
                       "--allreduce sparse cannot be combined with --balance: the chain sums whole gradients in block order")
        XCTAssertEqual(conflict { $0.model.kind = .mlp; $0.reduction.overlap = true },
                       "--allreduce sparse reduces the whole gradient's touched coordinates in one list after the backward pass: it cannot be combined with --overlap")
        XCTAssertEqual(conflict { $0.data.partition = .features },
                       "--allreduce sparse reduces the touched coordinates of a replicated gradient; --partition features exchanges scores, not gradients: use --partition rows")
    }
}
