import XCTest
import DMLComm
import DMLData
import DMLModels
import DMLTraining
import DMLTestSupport

/// `--optimizer lbfgs` and `--optimizer newton` (`SecondOrderTrainer`), through the library's `TrainingJob`
/// on in-process ranks: both reach the same optimum for every convex model, on any number of ranks, with
/// bit-identical replicas; `--tol` stops them; a checkpoint continues with the same bits; flags that mean
/// nothing to them are refused.
final class SecondOrderTrainerTests: XCTestCase {
    struct Run { let objective: Double; let gradientNorm: Double; let steps: Int; let parameters: [[Float]]; let finished: String? }

    func configuration(_ kind: ModelKind, _ optimizer: OptimizerKind, steps: Int, tol: Double) -> JobConfiguration {
        var c = JobConfiguration()
        c.model.kind = kind
        c.data.syntheticRows = 311
        c.data.syntheticTestRows = 0
        c.data.syntheticFeatures = 12
        c.data.syntheticClasses = kind == .softmax ? 4 : 2
        if kind == .linear { c.data.task = .regression }
        c.optimization.optimizer = optimizer
        c.optimization.weightDecay = 0.02
        c.optimization.steps = steps
        c.optimization.tol = tol
        c.outputs.verifyEvery = 1
        c.outputs.collectiveTimeout = 30
        return c
    }

    func run(_ c: JobConfiguration, ranks: Int = 1, faults: FaultPlan = FaultPlan()) throws -> Run {
        XCTAssertNil(c.conflict())
        let results = try LocalCommunicator.run(size: ranks, timeout: 60) { comm -> (Double, Double, Int, [Float], String?) in
            let job = TrainingJob(configuration: c, comm: comm, faults: faults, output: .silent)
            let result = try job.run()
            let strategy = try XCTUnwrap(job.strategy as? SecondOrderTrainer)
            let figures = Dictionary(uniqueKeysWithValues: strategy.stepFigures.map { ($0.name, $0.value) })
            return (try XCTUnwrap(figures["objective"]), try XCTUnwrap(figures["grad_norm"]), strategy.step, result.parameters, strategy.finished)
        }
        return Run(objective: results[0].0, gradientNorm: results[0].1, steps: results[0].2, parameters: results.map(\.3), finished: results[0].4)
    }

    func testLBFGSAndNewtonReachTheSameOptimumForEveryConvexModel() throws {
        for kind in [ModelKind.linear, .logistic, .softmax] {
            // A tolerance below what Float32 sums resolve: each runs until it can decrease F no further.
            let lbfgs = try run(configuration(kind, .lbfgs, steps: 300, tol: 1e-9))
            let newton = try run(configuration(kind, .newton, steps: 300, tol: 1e-9))
            XCTAssertEqual(lbfgs.objective, newton.objective, accuracy: 1e-6 * newton.objective, "\(kind)")
            XCTAssertNotNil(lbfgs.finished, "\(kind): stopped before the iteration limit")
            XCTAssertNotNil(newton.finished, "\(kind): stopped before the iteration limit")
            // Both run to F's precision: the gradient is then small, whichever stopped first.
            XCTAssertLessThan(lbfgs.gradientNorm, 1e-4, "\(kind): \(lbfgs.finished ?? "")")
            XCTAssertLessThan(newton.gradientNorm, 1e-4, "\(kind): \(newton.finished ?? "")")
            // L-BFGS stops where its line search cannot resolve F any more (Float32 margins): within a few 1e-3 of
            // the preconditioned Newton's parameters, which get much closer (‖∇F‖ ~1e-7).
            XCTAssertLessThan(maxRelativeDifference(lbfgs.parameters[0], newton.parameters[0]), 5e-3,
                              "\(kind): ‖∇F‖ \(lbfgs.gradientNorm) and \(newton.gradientNorm)")
            // The optimum: a plain gradient step from it raises F or leaves it (checked by the SGD path's objective).
            let sgd = try XCTUnwrap(sgdObjective(kind, at: newton.parameters[0]))
            XCTAssertEqual(sgd, newton.objective, accuracy: 1e-5 * newton.objective, "\(kind): the objective is the SGD path's")
        }
    }

    /// The SGD path's mean objective (loss + (λ/2)·‖W‖² charged per row) at `parameters`, one rank.
    func sgdObjective(_ kind: ModelKind, at parameters: [Float]) throws -> Double? {
        let c = configuration(kind, .lbfgs, steps: 1, tol: 0)
        return try LocalCommunicator.run(size: 1) { comm -> Double in
            let data = try c.data.load(comm: comm, seed: c.optimization.seed)
            let model = try c.model.make(features: data.train.features, classes: data.train.classes, weightDecay: c.optimization.weightDecay)
            var g = [Float](repeating: 0, count: parameters.count)
            let t = data.train
            let loss = t.x.withUnsafeBufferPointer { x in
                t.y.withUnsafeBufferPointer { y in
                    model.accumulateGradient(parameters: parameters, batch: Batch(x: x.baseAddress!, y: y.baseAddress!, rows: t.rows, features: t.features), into: &g)
                }
            }
            return loss / Double(t.rows)
        }.first
    }

    func testAnyNumberOfRanksReachesTheSameOptimumWithIdenticalReplicas() throws {
        for optimizer in [OptimizerKind.lbfgs, .newton] {
            let one = try run(configuration(.softmax, optimizer, steps: 200, tol: 1e-6))
            for ranks in [2, 3] {
                let many = try run(configuration(.softmax, optimizer, steps: 200, tol: 1e-6), ranks: ranks)
                XCTAssertEqual(many.objective, one.objective, accuracy: 1e-6 * one.objective, "\(optimizer) np \(ranks)")
                for r in 1..<ranks {
                    XCTAssertEqual(many.parameters[r].map(\.bitPattern), many.parameters[0].map(\.bitPattern), "\(optimizer) np \(ranks) rank \(r)")
                }
            }
        }
    }

    func testTheToleranceStopsEarlyAndZeroRunsEveryIteration() throws {
        for optimizer in [OptimizerKind.lbfgs, .newton] {
            let loose = try run(configuration(.logistic, optimizer, steps: 100, tol: 1e-2))
            let tight = try run(configuration(.logistic, optimizer, steps: 100, tol: 1e-6))
            XCTAssertTrue(loose.finished?.hasPrefix("converged after iteration \(loose.steps)") == true, loose.finished ?? "none")
            XCTAssertLessThan(loose.steps, tight.steps, "\(optimizer)")
            XCTAssertGreaterThan(loose.objective, tight.objective, "\(optimizer)")
            let all = try run(configuration(.logistic, optimizer, steps: 3, tol: 0))
            XCTAssertEqual(all.steps, 3)
            XCTAssertNil(all.finished)
        }
    }

    func testANonFiniteObjectiveStopsEveryRankBeforeTheUpdate() throws {
        let faults = try FaultPlan(parsing: "nan:rank=1:step=3")
        let c = configuration(.logistic, .lbfgs, steps: 20, tol: 0)
        let errors = try LocalCommunicator.run(size: 2, timeout: 60) { comm -> String in
            do { _ = try TrainingJob(configuration: c, comm: comm, faults: faults, output: .silent).run(); return "" } catch { return "\(error)" }
        }
        for e in errors { XCTAssertTrue(e.contains("diverged at iteration 3") && e.contains("not finite"), e) }
    }

    /// The safety nets apply as to any strategy: a perturbed replica is caught by the replica check, and the
    /// timeline records the phases of every iteration.
    func testAPerturbedReplicaIsCaughtAndTheTimelineRecordsEveryPhase() throws {
        var c = configuration(.softmax, .newton, steps: 6, tol: 0)
        let faults = try FaultPlan(parsing: "perturb:rank=1:step=3")
        let errors = try LocalCommunicator.run(size: 3, timeout: 60) { comm -> String in
            do { _ = try TrainingJob(configuration: c, comm: comm, faults: faults, output: .silent).run(); return "" } catch { return "\(error)" }
        }
        for e in errors { XCTAssertTrue(e.contains("replica check failed after step 3") && e.contains("rank 1"), e) }
        c.outputs.timeline = MPIRunner.temporaryDirectory() + "/trace.json"
        let spans = try LocalCommunicator.run(size: 2, timeout: 60) { comm -> Set<String> in
            let job = TrainingJob(configuration: c, comm: comm, output: .silent)
            _ = try job.run()
            return Set(job.strategy?.hooks.timeline?.spans.map(\.name) ?? [])
        }
        for phase in ["compute", "wait", "allreduce", "update", "verify", "evaluate"] { XCTAssertTrue(spans[0].contains(phase), "\(phase): \(spans[0])") }
    }

    /// A trainer checkpointed after k iterations and restored into a fresh one ends with the same bits as one
    /// that never stopped (the L-BFGS pairs, the radius and ‖∇F(θ₀)‖ travel in the checkpoint; the margins the
    /// line search reuses are recomputed from the parameters, as every accepted point's are). The linear case
    /// (targets ×100: a first step of unit length is far too short) sends L-BFGS's line search along the
    /// segment of cached margins before the checkpoint.
    func testACheckpointContinuesWithTheSameBits() throws {
        let task = SyntheticClassification(seed: 3, features: 10, classes: 3)
        for (kind, linear) in [(FullBatchMethodKind.lbfgs, false), (.lbfgs, true), (.newton, false)] {
            let results = try LocalCommunicator.run(size: 2) { comm -> [[Float]] in
                func trainer() -> SecondOrderTrainer {
                    var shard = task.trainingShard(rows: 250, rank: comm.rank, ranks: comm.size)
                    if linear { shard.y = shard.y.map { 100 * $0 - 100 } }
                    let model: TwiceDifferentiable = linear ? LinearRegression(features: 10, weightDecay: 1e-4)
                                                            : SoftmaxRegression(features: 10, classes: 3, weightDecay: 0.01)
                    return SecondOrderTrainer(comm: comm, model: model, train: shard,
                                              config: TrainingConfig(steps: 12, batchSize: nil, learningRate: 0, seed: 3, logEvery: 100),
                                              settings: FullBatchSettings(kind: kind, memory: 3, tolerance: 0), allreduce: RingAllreduce(comm: comm))
                }
                let straight = trainer()
                try straight.run { _ in }
                let first = trainer()
                var trials: Float = 0
                for _ in 0..<5 {
                    try first.trainStep()
                    trials += Float(first.stepFigures.first { $0.name == "line_trials" }?.value ?? 0)
                }
                let bytes = try first.checkpoint(identity: [:]).encode()
                let second = trainer()
                try second.restore(try Checkpoint.decode(bytes))
                try second.run { _ in }
                return [straight.parameters, second.parameters, [Float(straight.step), Float(second.step), trials]]
            }
            for r in results {
                XCTAssertEqual(r[2][0], r[2][1])
                XCTAssertGreaterThan(r[2][0], 6, "\(kind): the restored run went on for some iterations")
                XCTAssertEqual(r[1].map(\.bitPattern), r[0].map(\.bitPattern), "\(kind) linear \(linear)")
                if linear { XCTAssertGreaterThan(r[2][2], 0, "the line search went along the segment before the checkpoint") }
            }
        }
    }

    func testFlagsThatMeanNothingToAFullBatchMethodAreRefused() {
        let base = configuration(.logistic, .newton, steps: 10, tol: 1e-4)
        XCTAssertNil(base.conflict())
        var full = base
        full.givenFlags = ["batch-size", "optimizer", "tol"]
        full.optimization.batchSize = nil
        XCTAssertNil(full.conflict(), "--batch-size full is what the method does")
        let refused: [(String, (inout JobConfiguration) -> Void)] = [
            ("the MLP's loss is not convex", { $0.model.kind = .mlp }),
            ("needs --partition rows", { $0.data.partition = .features }),
            ("--lr means nothing to --optimizer newton", { $0.optimization.lr = 0.5 }),
            ("--lr means nothing", { $0.givenFlags = ["lr"] }),
            ("--batch-size means nothing", { $0.optimization.batchSize = 64 }),
            ("--batch-size means nothing", { $0.givenFlags = ["batch-size"] }),
            ("--momentum means nothing", { $0.optimization.momentum = 0.5 }),
            ("--lr-schedule means nothing", { $0.optimization.schedule = .cosine }),
            ("--warmup means nothing", { $0.optimization.warmup = 3 }),
            ("--compress means nothing", { $0.reduction.compress = .bf16 }),
            ("--balance means nothing", { $0.reduction.balance = true }),
            ("--lr-search means nothing", { $0.optimization.lrSearch = [0.1, 1] }),
            ("--lbfgs-memory needs --optimizer lbfgs", { $0.optimization.lbfgsMemory = 4 }),
            ("--tol is the stopping tolerance", { $0.optimization.optimizer = .sgd; $0.givenFlags = ["tol"] }),
            ("--tol is the stopping tolerance", { $0.optimization.optimizer = .adam; $0.optimization.tol = 1e-3 }),
            ("--lbfgs-memory needs --optimizer lbfgs", { $0.optimization.optimizer = .sgd; $0.optimization.lbfgsMemory = 3 }),
        ]
        for (message, change) in refused {
            var c = base
            change(&c)
            let got = c.conflict()
            XCTAssertTrue(got?.contains(message) == true, "\(message): got \(got ?? "accepted")")
            XCTAssertFalse(got?.contains("\n") ?? false)
        }
        var lbfgs = base
        lbfgs.optimization.optimizer = .lbfgs
        lbfgs.optimization.lbfgsMemory = 4
        XCTAssertNil(lbfgs.conflict())
    }
}
