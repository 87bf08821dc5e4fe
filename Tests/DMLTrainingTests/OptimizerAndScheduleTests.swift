import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

/// Each rule against steps computed by hand (in Double) from its textbook formula.
final class OptimizerAndScheduleTests: XCTestCase {
    let w0: [Float] = [1, -2, 0.5]
    let g1: [Float] = [0.5, 1, -4]
    let g2: [Float] = [-1, 0.25, 2]

    /// Two updates with gradients g1, g2 and rate lr; returns the parameters after each. All three
    /// parameters are weights (decayed) unless `decayed` says otherwise.
    func twoSteps(_ config: OptimizerConfig, lr: Float, decayed: [Range<Int>] = [0..<3]) -> ([Float], [Float]) {
        let opt = Optimizer(config, count: 3, decayed: decayed)
        var w = w0
        var after: [[Float]] = []
        for (t, g) in [g1, g2].enumerated() {
            w.withUnsafeMutableBufferPointer { wp in
                g.withUnsafeBufferPointer { opt.step(parameters: wp.baseAddress!, gradient: $0.baseAddress!, t: t + 1, learningRate: lr) }
            }
            after.append(w)
        }
        XCTAssertEqual(opt.state.count, config.kind.stateCopies * 3)
        return (after[0], after[1])
    }

    func assertClose(_ a: [Float], _ b: [Double], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(Double(x), y, accuracy: 1e-6 * max(1, abs(y)), message, file: file, line: line) }
    }

    func testSGD() {
        let (a, b) = twoSteps(OptimizerConfig(kind: .sgd), lr: 0.1)
        assertClose(a, [0.95, -2.1, 0.9], "sgd step 1")
        assertClose(b, [1.05, -2.125, 0.7], "sgd step 2")
        // Weight decay 0.5 adds 0.5·w to the gradient: w − 0.1·(g + 0.5·w).
        let (c, _) = twoSteps(OptimizerConfig(kind: .sgd, weightDecay: 0.5), lr: 0.1)
        assertClose(c, [1 - 0.1 * (0.5 + 0.5), -2 - 0.1 * (1 - 1), 0.5 - 0.1 * (-4 + 0.25)], "sgd weight decay")
    }

    func testMomentumAndNesterov() {
        // v1 = g1, w1 = w0 − lr·v1; v2 = 0.9·v1 + g2, w2 = w1 − lr·v2.
        let lr = 0.1, mu = 0.9
        var v = g1.map(Double.init)
        let w1 = zip(w0, v).map { Double($0) - lr * $1 }
        v = zip(v, g2).map { mu * $0 + Double($1) }
        let w2 = zip(w1, v).map { $0 - lr * $1 }
        let (a, b) = twoSteps(OptimizerConfig(kind: .momentum, momentum: 0.9), lr: 0.1)
        assertClose(a, w1, "momentum step 1")
        assertClose(b, w2, "momentum step 2")
        // Nesterov: w ← w − lr·(g + μ·v) with v updated first.
        var vn = g1.map(Double.init)
        let n1 = (0..<3).map { Double(w0[$0]) - lr * (Double(g1[$0]) + mu * vn[$0]) }
        vn = (0..<3).map { mu * vn[$0] + Double(g2[$0]) }
        let n2 = (0..<3).map { n1[$0] - lr * (Double(g2[$0]) + mu * vn[$0]) }
        let (c, d) = twoSteps(OptimizerConfig(kind: .momentum, momentum: 0.9, nesterov: true), lr: 0.1)
        assertClose(c, n1, "nesterov step 1")
        assertClose(d, n2, "nesterov step 2")
    }

    /// Adam from its textbook formula in Double; `decays[i]` says whether parameter i gets the weight decay.
    func adamReference(decoupled: Bool, wd: Double, decays: [Bool] = [true, true, true]) -> ([Double], [Double]) {
        let lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8
        var w = w0.map(Double.init), m = [0.0, 0, 0], v = [0.0, 0, 0]
        var out: [[Double]] = []
        for (t, g) in [g1, g2].enumerated() {
            for i in 0..<3 {
                var gi = Double(g[i])
                let lambda = decays[i] ? wd : 0
                if decoupled { w[i] -= lr * lambda * w[i] } else { gi += lambda * w[i] }
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                let mh = m[i] / (1 - pow(b1, Double(t + 1))), vh = v[i] / (1 - pow(b2, Double(t + 1)))
                w[i] -= lr * mh / (vh.squareRoot() + eps)
            }
            out.append(w)
        }
        return (out[0], out[1])
    }

    func testAdamAndAdamW() {
        let (a, b) = twoSteps(OptimizerConfig(kind: .adam), lr: 0.01)
        let (ra, rb) = adamReference(decoupled: false, wd: 0)
        assertClose(a, ra, "adam step 1")
        assertClose(b, rb, "adam step 2")
        // The first Adam step moves every parameter by lr against the gradient's sign.
        assertClose(a, [0.99, -2.01, 0.51], "adam step 1 is lr·sign")
        let (c, d) = twoSteps(OptimizerConfig(kind: .adam, weightDecay: 0.1), lr: 0.01)
        let (rc, rd) = adamReference(decoupled: false, wd: 0.1)
        assertClose(c, rc, "adam L2 step 1")
        assertClose(d, rd, "adam L2 step 2")
        let (e, f) = twoSteps(OptimizerConfig(kind: .adamw, weightDecay: 0.1), lr: 0.01)
        let (re, rf) = adamReference(decoupled: true, wd: 0.1)
        assertClose(e, re, "adamw step 1")
        assertClose(f, rf, "adamw step 2")
        XCTAssertNotEqual(d, f, "adam's L2 and adamw's decoupled decay differ")
    }

    /// AdaGrad by hand: G1 = g1², w1 = w0 − lr·g1/(√G1 + ε) = w0 − lr·sign(g1) (plus ε's share); G2 = G1 + g2²,
    /// w2 = w1 − lr·g2/√G2. With an L2 decay the decayed term joins g before it is squared.
    func testAdagrad() {
        let lr = 0.1, eps = 1e-3
        var w = w0.map(Double.init), s = [0.0, 0, 0]
        var reference: [[Double]] = []
        for g in [g1, g2] {
            for i in 0..<3 {
                s[i] += Double(g[i]) * Double(g[i])
                w[i] -= lr * Double(g[i]) / (s[i].squareRoot() + eps)
            }
            reference.append(w)
        }
        let (a, b) = twoSteps(OptimizerConfig(kind: .adagrad, adagradEpsilon: 1e-3), lr: 0.1)
        assertClose(a, reference[0], "adagrad step 1")
        assertClose(b, reference[1], "adagrad step 2")
        // Step 1 by hand: g1 = (0.5, 1, −4), so w0 − 0.1·g/(|g| + 0.001).
        assertClose(a, [1 - 0.1 * 0.5 / 0.501, -2 - 0.1 * 1 / 1.001, 0.5 + 0.1 * 4 / 4.001], "adagrad step 1 by hand")
        // Step 2, coordinate 2: G = 16 + 4 = 20, w = w1 − 0.1·2/(√20 + 0.001).
        XCTAssertEqual(Double(b[2]), Double(a[2]) - 0.1 * 2 / (20.0.squareRoot() + 0.001), accuracy: 1e-6)
        // L2 decay 0.5 on every coordinate: g + 0.5·w.
        let (c, _) = twoSteps(OptimizerConfig(kind: .adagrad, weightDecay: 0.5, adagradEpsilon: 1e-3), lr: 0.1)
        let gd = (0..<3).map { Double(g1[$0]) + 0.5 * Double(w0[$0]) }
        assertClose(c, (0..<3).map { Double(w0[$0]) - 0.1 * gd[$0] / (abs(gd[$0]) + 1e-3) }, "adagrad with L2 decay")
        // The step does not depend on the gradient's scale (√G ≫ ε): a batch mean needs no rescaled rate.
        let opt = Optimizer(OptimizerConfig(kind: .adagrad), count: 1, decayed: [])
        var x: [Float] = [1], small: [Float] = [1e-3]
        x.withUnsafeMutableBufferPointer { xp in small.withUnsafeMutableBufferPointer { opt.step(parameters: xp.baseAddress!, gradient: $0.baseAddress!, t: 1, learningRate: 0.5) } }
        XCTAssertEqual(x[0], 0.5, accuracy: 1e-6)
    }

    /// adamw on a layout of a weight [1 × 2] and a bias [1]: the decoupled decay shrinks the weights and
    /// spares the bias, as `--help` and the README say.
    func testAdamWDecaysTheWeightsAndSparesTheBias() {
        let layout = ParameterLayout([("weight", [1, 2]), ("bias", [1])])
        let opt = Optimizer(OptimizerConfig(kind: .adamw, weightDecay: 0.1), layout: layout)
        XCTAssertEqual(opt.decayed, [0..<2])
        var w = w0  // weight (1, −2), bias 0.5
        var after: [[Float]] = []
        for (t, g) in [g1, g2].enumerated() {
            w.withUnsafeMutableBufferPointer { wp in
                g.withUnsafeBufferPointer { opt.step(parameters: wp.baseAddress!, gradient: $0.baseAddress!, t: t + 1, learningRate: 0.01) }
            }
            after.append(w)
        }
        // Step 1 by hand (lr 0.01, λ 0.1): Adam's first step is lr·g/(|g| + ε) ≈ lr·sign(g); the decay takes
        // lr·λ·w = 0.001·w off the weights first.
        //   1 − 0.001·1 − 0.01 = 0.989;   −2 + 0.001·2 − 0.01 = −2.008;   bias 0.5 + 0.01 = 0.51 (not 0.5095).
        assertClose(after[0], [0.989, -2.008, 0.51], "adamw step 1")
        let (r1, r2) = adamReference(decoupled: true, wd: 0.1, decays: [true, true, false])
        assertClose(after[0], r1, "adamw step 1 (reference)")
        assertClose(after[1], r2, "adamw step 2")
        let (_, plain) = adamReference(decoupled: false, wd: 0)
        XCTAssertEqual(Double(after[1][2]), plain[2], accuracy: 1e-7, "the bias moves as under plain Adam")
        XCTAssertGreaterThan(abs(Double(after[1][0]) - plain[0]), 1e-5, "the weights are decayed")
        // The L2 form (sgd, momentum, adam) takes the same ranges: here sgd, λ 0.5, the bias spared.
        let (sgd, _) = twoSteps(OptimizerConfig(kind: .sgd, weightDecay: 0.5), lr: 0.1, decayed: [0..<2])
        assertClose(sgd, [1 - 0.1 * (0.5 + 0.5), -2 - 0.1 * (1 - 1), 0.5 - 0.1 * -4], "sgd weight decay spares the bias")
    }

    /// The ranges come from the layouts: every tensor but the biases, for each model, for a feature slice,
    /// and in the optimizers the two trainers build.
    func testDecayedRangesAreTheWeightsOfTheLayout() throws {
        XCTAssertEqual(SoftmaxRegression(features: 5, classes: 3).layout.weightRanges, [0..<15])
        XCTAssertEqual(LogisticRegression(features: 4).layout.weightRanges, [0..<4])
        let mlp = MLP(features: 3, hidden: [4], classes: 2)
        XCTAssertEqual(mlp.layout.views.map(\.name), ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"])
        XCTAssertEqual(mlp.layout.weightRanges, [0..<12, 16..<24])
        let slice = FeatureSlice(kind: .softmax, features: 13, columns: 4..<9, classes: 3)
        XCTAssertEqual(slice.layout.count, slice.localCount)
        XCTAssertEqual(slice.layout.weightRanges, [0..<15])

        let task = SyntheticClassification(seed: 3, features: 13, classes: 3)
        let config = TrainingConfig(steps: 1, batchSize: 8, learningRate: 0.01, seed: 3, logEvery: 1000,
                                    optimizer: OptimizerConfig(kind: .adamw, weightDecay: 0.1))
        let decayed = try LocalCommunicator.run(size: 1) { comm -> [[Range<Int>]] in
            let model = MLP(features: 13, hidden: [4], classes: 3)
            let rows = Trainer(comm: comm, model: model, train: task.trainingShard(rows: 20, rank: 0, ranks: 1), config: config,
                               allreduce: AllreduceKind.ring.make(for: comm))
            let features = FeaturePartitionedTrainer(comm: comm, slice: slice, train: task.columnSlice(rows: 20, columns: 4..<9, testSplit: false),
                                                     config: config, allreduce: AllreduceKind.ring.make(for: comm))
            return [rows.optimizer.decayed, features.optimizer.decayed]
        }[0]
        XCTAssertEqual(decayed[0], [0..<52, 56..<68], "Trainer: layers.0.weight and layers.1.weight")
        XCTAssertEqual(decayed[1], [0..<15], "FeaturePartitionedTrainer: the weight slice")
    }

    func testSchedules() {
        let constant = LearningRateSchedule(base: 0.5, total: 100)
        XCTAssertEqual([0, 50, 99].map { constant.lr(at: $0) }, [0.5, 0.5, 0.5])
        let warm = LearningRateSchedule(base: 0.4, warmup: 4, total: 100)
        XCTAssertEqual((0..<6).map { warm.lr(at: $0) }, [0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
        let step = LearningRateSchedule(base: 1, decay: .step(every: 10, gamma: 0.5), total: 100)
        XCTAssertEqual([0, 9, 10, 19, 20, 35].map { step.lr(at: $0) }, [1, 1, 0.5, 0.5, 0.25, 0.125])
        // Cosine from 1 to 0.1 over steps 10…110 after 10 warm-up steps: 1 at 10, 0.55 halfway, 0.1 at the end.
        let cosine = LearningRateSchedule(base: 1, decay: .cosine(minimum: 0.1), warmup: 10, total: 110)
        XCTAssertEqual(cosine.lr(at: 4), 0.5)
        XCTAssertEqual(cosine.lr(at: 10), 1)
        XCTAssertEqual(cosine.lr(at: 60), 0.55, accuracy: 1e-7)
        XCTAssertEqual(cosine.lr(at: 35), Float(0.1 + 0.9 * (1 + cos(Double.pi / 4)) / 2), accuracy: 1e-7)
        XCTAssertEqual(cosine.lr(at: 110), 0.1, accuracy: 1e-7)
        XCTAssertTrue(cosine.description.contains("total=110"), "the cosine's horizon is part of its identity")
        XCTAssertFalse(constant.description.contains("total"), "a constant rate may be resumed with more steps")
    }
}

final class CheckpointTests: XCTestCase {
    func sample(step: Int = 7) -> Checkpoint {
        var rng = TestRandom(seed: UInt64(step))
        return Checkpoint(step: step, epoch: 1, parameters: rng.floats(40), optimizerState: rng.floats(80),
                          identity: ["config.model.kind": "softmax", "derived.model_shape": "weight[4, 9],bias[4]",
                                     "config.optimization.batchSize": "64", "config.optimization.seed": "1",
                                     "config.optimization.optimizer": "adam", "derived.lr_schedule": "constant(lr=0.1)",
                                     "derived.data_rows": "600", "derived.data_checksum": "0123456789abcdef"])
    }

    func testRoundTripAndEveryCorruptionIsDetected() throws {
        let c = sample()
        let bytes = try c.encode()
        XCTAssertEqual(try Checkpoint.decode(bytes), c)
        XCTAssertEqual(try c.encode(), bytes, "deterministic")
        // Flip one bit at positions spread over the whole file: each is either unparsable or fails the checksum.
        for pos in stride(from: 0, to: bytes.count, by: 37) {
            var bad = bytes
            bad[pos] ^= 0x10
            XCTAssertThrowsError(try Checkpoint.decode(bad), "flipped bit at byte \(pos) of \(bytes.count)")
        }
        for n in [0, 7, 100, bytes.count - 1] {
            XCTAssertThrowsError(try Checkpoint.decode(Array(bytes.prefix(n))), "truncated to \(n) bytes")
        }
    }

    func testMismatchNamesTheField() {
        let c = sample()
        XCTAssertNil(c.mismatch(with: c.identity))
        var other = c.identity
        other["config.optimization.seed"] = "2"
        let m = c.mismatch(with: other) ?? ""
        XCTAssertEqual(m, "'optimization.seed' differs (the checkpoint has '1', this run has '2')")
    }

    func testStorePrunesAndFallsBackToTheNewestValidFile() throws {
        let dir = MPIRunner.temporaryDirectory()
        let store = CheckpointStore(directory: dir + "/ckpt", keep: 3)
        try store.prepare()
        for s in [5, 10, 15, 20, 25] { try store.save(sample(step: s)) }
        XCTAssertEqual(store.list().map(\.step), [25, 20, 15], "keeps the newest 3")
        // Damage the newest two: a flipped data byte and a truncation.
        var newest = [UInt8](FileManager.default.contents(atPath: store.path(step: 25))!)
        newest[newest.count - 3] ^= 1
        try Data(newest).write(to: URL(fileURLWithPath: store.path(step: 25)))
        truncate(store.path(step: 20), 300)
        var warnings: [String] = []
        let found = try store.newestValid { warnings.append($0) }
        XCTAssertEqual(found?.checkpoint, sample(step: 15))
        XCTAssertEqual(warnings.count, 2)
        XCTAssertTrue(warnings[0].contains("ckpt-00000025") && warnings[0].contains("checksum"), warnings[0])
        XCTAssertTrue(warnings[1].contains("ckpt-00000020"), warnings[1])
        truncate(store.path(step: 15), 10)
        XCTAssertThrowsError(try store.newestValid { _ in }) { XCTAssertTrue("\($0)".contains("no valid checkpoint"), "\($0)") }
        XCTAssertNil(try CheckpointStore(directory: dir + "/empty", keep: 1).newestValid { _ in })
    }

    func testFaultPlanParsing() throws {
        let plan = try FaultPlan(parsing: "perturb:rank=1:step=5, nan:step=3:rank=0")
        XCTAssertEqual(plan.faults.count, 2)
        XCTAssertTrue(plan.fires(.perturb, rank: 1, step: 5))
        XCTAssertFalse(plan.fires(.perturb, rank: 0, step: 5))
        XCTAssertTrue(plan.fires(.nan, rank: 0, step: 3))
        for bad in ["explode:rank=1:step=2", "nan:rank=1", "nan:rank=x:step=1", "nan:rank=0:step=0", "nan:rank=0:step=1:when=now"] {
            XCTAssertThrowsError(try FaultPlan(parsing: bad), bad)
        }
    }

    func testDataChecksumDoesNotDependOnTheNumberOfRanks() throws {
        let task = SyntheticClassification(seed: 3, features: 7, classes: 3)
        func checksum(_ p: Int, rows: Int = 101) throws -> UInt64 {
            try LocalCommunicator.run(size: p) { comm in
                try Checksum.dataset(task.trainingShard(rows: rows, rank: comm.rank, ranks: comm.size), comm: comm)
            }[0]
        }
        let one = try checksum(1)
        for p in [2, 3, 5] { XCTAssertEqual(try checksum(p), one, "p=\(p)") }
        XCTAssertNotEqual(try checksum(2, rows: 100), one, "a different data set has a different checksum")
    }

    func testReplicaCheckNamesTheRankThatDiffers() throws {
        let results = try LocalCommunicator.run(size: 4) { comm -> String? in
            let h: UInt64 = comm.rank == 2 ? 99 : 7
            let (differing, _) = try comm.ranksDiffering(in: h)
            return differing.map(String.init).joined(separator: ",")
        }
        XCTAssertEqual(results, ["2", "2", "2", "2"])
    }
}
