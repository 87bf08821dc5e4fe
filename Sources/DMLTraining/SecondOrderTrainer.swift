import Foundation
import DMLComm
import DMLData
import DMLKernels
import DMLModels
import DMLStatus

/// The full-batch second-order methods `--optimizer` names, and their settings.
public enum FullBatchMethodKind: String, Sendable, CaseIterable {
    /// Limited-memory BFGS with a strong-Wolfe line search (`LBFGS`).
    case lbfgs
    /// Trust-region Newton-CG as LIBLINEAR's TRON (`TrustRegionNewton`).
    case newton

    public static let defaultMemory = 10

    public init?(_ optimizer: OptimizerKind) { self.init(rawValue: optimizer.rawValue) }

    /// Parameter-sized vectors the method keeps between iterations (checkpointed): L-BFGS's `memory` pairs
    /// (s, y); none for Newton (its radius is a scalar).
    public func stateCopies(memory: Int) -> Int { self == .lbfgs ? 2 * memory : 0 }
}

/// A full-batch method's settings, as plain values (`--optimizer`, `--lbfgs-memory`, `--tol`).
public struct FullBatchSettings: Sendable, Equatable {
    public var kind: FullBatchMethodKind
    /// L-BFGS: correction pairs kept.
    public var memory: Int
    /// Stop when `‖∇F(θ)‖ ≤ tolerance·‖∇F(θ₀)‖`, θ₀ the run's starting parameters (LIBLINEAR's `-e` for TRON,
    /// without its class-count factor); 0 runs to the iteration limit.
    public var tolerance: Double

    public static let defaultTolerance = 1e-4

    public init(kind: FullBatchMethodKind, memory: Int = FullBatchMethodKind.defaultMemory, tolerance: Double = FullBatchSettings.defaultTolerance) {
        precondition(memory >= 1 && tolerance >= 0)
        self.kind = kind
        self.memory = memory
        self.tolerance = tolerance
    }

    /// What changes the iterates, in one line (the derived identity a resume checks).
    public var description: String { kind == .lbfgs ? "lbfgs(memory=\(memory))" : "newton(tron)" }
}

/// A point of the objective: the parameters, `F(θ)` (mean loss + regulariser), its mean data loss, and `∇F(θ)`.
public struct FullBatchPoint {
    public var parameters: [Float]
    public var objective: Double
    public var loss: Double
    public var gradient: [Double]
    public var gradientNorm: Double { Vector64.norm(gradient) }
}

/// The collective operations a full-batch method iterates with. Every rank calls them in the same order with
/// the same arguments, and every rank receives the same bits, so every rank makes the same decisions.
public protocol FullBatchObjective: AnyObject {
    /// `F` and `∇F` at `parameters` (collective: one allreduce of parameters + 1 Doubles). A trial point's
    /// curvature is kept apart until `accept` makes it the current point's.
    func evaluate(_ parameters: [Float]) throws -> FullBatchPoint
    /// Makes the last evaluated point the one `hessianVector` works at.
    func accept()
    /// `∇²F(θ)·v` at the accepted point θ (collective: one allreduce of parameters + 1 Doubles).
    func hessianVector(_ v: [Double]) throws -> [Double]
}

/// What one iteration of a full-batch method did.
public enum FullBatchOutcome {
    /// Moved to `point` (accepted: its curvature is current), after `evaluations` function evaluations and
    /// `products` Hessian-vector products.
    case moved(FullBatchPoint, evaluations: Int, products: Int)
    /// No decrease can be found any more at the precision of the objective (the reason, in words); the
    /// parameters are unchanged.
    case stalled(String, evaluations: Int, products: Int)
}

/// One full-batch second-order method: iterations from a point, and the state it keeps between them.
/// Deterministic: the same point, state and objective bits give the same next point and state.
public protocol FullBatchMethod: AnyObject {
    var settings: FullBatchSettings { get }
    /// The parameter-sized vectors of the state, `settings.kind.stateCopies(memory:)` copies (checkpointed).
    var vectors: [Float] { get set }
    /// The scalars of the state (checkpointed as text; bit patterns for the Doubles).
    var scalars: [String: String] { get set }
    /// One iteration from `point` (whose curvature is the objective's current one).
    func iterate(from point: FullBatchPoint, objective: FullBatchObjective) throws -> FullBatchOutcome
}

extension FullBatchSettings {
    /// The method these settings describe, for `count` parameters.
    public func makeMethod(count: Int) -> FullBatchMethod {
        switch kind {
        case .lbfgs: return LBFGS(settings: self, count: count)
        case .newton: return TrustRegionNewton(settings: self, count: count)
        }
    }
}

/// Full-batch training of a convex model (`TwiceDifferentiable`: linear, logistic, softmax with L2) by a
/// second-order method (`FullBatchMethod`: L-BFGS or trust-region Newton), rows partitioned over the ranks.
/// One step is one iteration of the method:
/// ```
/// hooks.begin → [first step: F, ∇F at θ₀] → method.iterate: evaluations of F, ∇F (a line search, a trial
///   point) and Hessian-vector products (CG), each this rank's rows then one allreduce of parameters + 1
///   Doubles; the first of the step runs hooks.computed and hooks.gate → θ, F, ∇F → tolerance → hooks.end
/// ```
/// Every reduction is an allreduce of Doubles with the same bits on every rank (the job's algorithm), and the
/// method's decisions are functions of those bits, so replicas stay bit-identical. The state — the method's
/// vectors and scalars, ‖∇F(θ₀)‖, why it stopped — is checkpointed; F and ∇F at θ are recomputed on resume
/// (the same bits: the same function of θ), so a resumed run ends with the same bits as an uninterrupted one.
/// Cost per iteration: L-BFGS about 1.1 evaluations (2 passes over the rows each) and 4·memory·p flops;
/// Newton one evaluation and a few CG steps (2 passes each).
public final class SecondOrderTrainer: TrainingStrategy {
    public let comm: Communicator
    public let model: TwiceDifferentiable
    public let train: Dataset
    public let config: TrainingConfig
    public let settings: FullBatchSettings
    public let allreduce: AllreduceAlgorithm
    public let sampler: BatchSampler
    public let hooks: StepHooks
    public private(set) var parameters: [Float]
    public private(set) var step = 0
    public private(set) var lastLoss: Double?
    public private(set) var finished: String?
    let method: FullBatchMethod

    /// F, ∇F at `parameters` (nil before the first evaluation and after a restore).
    private var current: FullBatchPoint?
    /// ‖∇F(θ₀)‖ of the run's starting parameters (what `--tol` is relative to).
    private var initialGradientNorm: Double?
    private var objective: Objective!
    private var figures: [(name: String, value: Double)] = []
    private var started: Date?

    public init(comm: Communicator, model: TwiceDifferentiable, train: Dataset, config: TrainingConfig, settings: FullBatchSettings,
                allreduce: AllreduceAlgorithm, faults: FaultPlan = FaultPlan()) {
        self.comm = comm
        self.model = model
        self.train = train
        self.config = config
        self.settings = settings
        self.allreduce = allreduce
        hooks = StepHooks(comm: comm, faults: faults, collectiveTimeout: config.collectiveTimeout)
        sampler = BatchSampler(rows: train.globalRows, batchSize: train.globalRows, seed: config.seed, shuffle: false)
        parameters = [Float](repeating: 0, count: model.layout.count)
        parameters.withUnsafeMutableBufferPointer { model.initialize($0, seed: config.seed) }
        method = settings.makeMethod(count: model.layout.count)
        objective = Objective(self)
    }

    public var stepFigures: [(name: String, value: Double)] { figures }
    public var usesLearningRate: Bool { false }

    public func stepBody(number: Int) throws -> (loss: Double, rows: Int) {
        if started == nil { started = Date() }
        objective.beginStep(number)
        var evaluations = 0, products = 0
        if current == nil {
            let point = try objective.evaluate(parameters)
            objective.accept()
            current = point
            evaluations += 1
            if initialGradientNorm == nil { initialGradientNorm = point.gradientNorm }
        }
        var point = current!
        if !converged(point) {
            switch try method.iterate(from: point, objective: objective) {
            case let .moved(next, e, p):
                point = next
                evaluations += e
                products += p
            case let .stalled(reason, e, p):
                evaluations += e
                products += p
                finished = "stopped after iteration \(number): \(reason)"
            }
        }
        // A step whose evaluations were all answered from memory still meets the others at the gate.
        try objective.gateIfPending()
        current = point
        parameters = point.parameters
        step += 1
        lastLoss = point.loss
        if finished == nil && converged(point) {
            finished = "converged after iteration \(number): ‖∇F‖ \(String(format: "%.3e", point.gradientNorm)) ≤ --tol \(settings.tolerance) × ‖∇F(θ₀)‖ \(String(format: "%.3e", initialGradientNorm!))"
        }
        figures = [("objective", point.objective), ("grad_norm", point.gradientNorm), ("evaluations", Double(evaluations))]
        if settings.kind == .newton { figures.append(("hessian_products", Double(products))) }
        figures.append(("seconds", Date().timeIntervalSince(started!)))
        return (point.loss, train.globalRows)
    }

    private func converged(_ point: FullBatchPoint) -> Bool {
        settings.tolerance > 0 && point.gradientNorm <= settings.tolerance * initialGradientNorm!
    }

    /// The collective evaluations, over this rank's rows, with the hooks on the first one of a step.
    final class Objective: FullBatchObjective {
        unowned let trainer: SecondOrderTrainer
        private var workspaces = [CurvatureWorkspace(), CurvatureWorkspace()]
        /// Which workspace holds the accepted point's curvature (the other takes trial points).
        private var accepted = 0
        private var pendingGate: Int?
        private var local: [Float]
        private var reduced: [Double]

        init(_ trainer: SecondOrderTrainer) {
            self.trainer = trainer
            local = [Float](repeating: 0, count: trainer.model.layout.count)
            reduced = [Double](repeating: 0, count: trainer.model.layout.count + 1)
        }

        func beginStep(_ number: Int) { pendingGate = number }

        /// The step's gate if no collective of the step has run it yet.
        func gateIfPending() throws {
            guard let number = pendingGate else { return }
            pendingGate = nil
            trainer.hooks.computed(step: number, loss: nil, rows: trainer.train.rows)
            try trainer.hooks.gate(step: number, completed: trainer.step)
        }

        /// `body` over this rank's rows; nil when streamed rows could not be read (`readFailure`, which the
        /// `allreduce` that follows every pass agrees on: every rank throws it).
        private func withShard<R>(_ body: (Batch) -> R) -> R? {
            let t = trainer.train
            do {
                return try t.withRows(0..<t.rows) { block in
                    t.y.withUnsafeBufferPointer { y in
                        body(Batch(block: block, y: y.baseAddress ?? UnsafePointer(bitPattern: 8)!))
                    }
                }
            } catch {
                if readFailure == nil { readFailure = error }
                return nil
            }
        }

        /// A streamed shard's read error in the last pass over the rows.
        private var readFailure: Error?

        /// Sums `local` and `extra` (the loss sum, or 0) over the ranks into `reduced`, the first collective of a
        /// step running the hooks (the `nan` fault poisons `extra`). Throws when the gated sums are not finite.
        private func reduce(extra: Double, what: String) throws {
            var extra = extra
            if let number = pendingGate {
                pendingGate = nil
                var poisoned = Float(extra)
                trainer.hooks.computed(step: number, loss: &poisoned, rows: trainer.train.rows)
                if poisoned.isNaN { extra = .nan }
                try trainer.hooks.gate(step: number, completed: trainer.step)
                try allreduce(extra: extra, what: what)
                guard !reduced.contains(where: { !$0.isFinite }) else {
                    throw TrainingFailure("training diverged at iteration \(number): the \(what) is not finite; the parameters were not changed "
                                          + "and no checkpoint was written from them")
                }
                return
            }
            try allreduce(extra: extra, what: what)
        }

        /// `[local | extra]` summed over the ranks. Streamed rows first agree on whether every rank could read
        /// its rows (`readFailure`: then every rank throws it): one small collective per pass over the shard.
        private func allreduce(extra: Double, what: String) throws {
            let p = local.count
            for i in 0..<p { reduced[i] = Double(local[i]) }
            reduced[p] = extra
            try trainer.comm.watched("the \(what) allreduce of iteration \(trainer.step + 1)", seconds: trainer.config.collectiveTimeout) {
                if trainer.train.isStreamed { try trainer.comm.agree(error: readFailure) }
                try reduced.withUnsafeMutableBufferPointer { try trainer.allreduce.run($0, op: .sum) }
            }
            trainer.hooks.span("allreduce", step: trainer.step + 1)
        }

        func evaluate(_ parameters: [Float]) throws -> FullBatchPoint {
            let model = trainer.model, p = local.count
            let workspace = workspaces[1 - accepted]
            for i in 0..<p { local[i] = 0 }
            let loss = parameters.withUnsafeBufferPointer { w in
                local.withUnsafeMutableBufferPointer { g in
                    withShard { model.dataLossAndGradient(parameters: w.baseAddress!, batch: $0, into: g.baseAddress!, workspace: workspace) } ?? 0
                }
            }
            try reduce(extra: loss, what: "objective")
            let n = Double(trainer.train.globalRows)
            var gradient = [Double](repeating: 0, count: p)
            for i in 0..<p { gradient[i] = reduced[i] / n }
            let meanLoss = reduced[p] / n
            let penalty = parameters.withUnsafeBufferPointer { w in
                gradient.withUnsafeMutableBufferPointer { model.addRegularizer(parameters: w.baseAddress!, gradient: $0.baseAddress!) }
            }
            return FullBatchPoint(parameters: parameters, objective: meanLoss + penalty, loss: meanLoss, gradient: gradient)
        }

        func accept() { accepted = 1 - accepted }

        func hessianVector(_ v: [Double]) throws -> [Double] {
            let model = trainer.model, p = local.count
            let workspace = workspaces[accepted]
            let vf = v.map { Float($0) }
            for i in 0..<p { local[i] = 0 }
            vf.withUnsafeBufferPointer { vp in
                local.withUnsafeMutableBufferPointer { out in
                    _ = withShard { model.dataHessianVector(vp.baseAddress!, batch: $0, workspace: workspace, into: out.baseAddress!) }
                }
            }
            try reduce(extra: 0, what: "Hessian-vector product")
            let n = Double(trainer.train.globalRows)
            var out = [Double](repeating: 0, count: p)
            for i in 0..<p { out[i] = reduced[i] / n }
            v.withUnsafeBufferPointer { vp in out.withUnsafeMutableBufferPointer { model.addRegularizerCurvature(vp.baseAddress!, into: $0.baseAddress!) } }
            return out
        }
    }

    // MARK: - The session's side

    public func withReplicatedParameters(_ body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        parameters.withUnsafeMutableBufferPointer { body($0) }
        // The `perturb` fault shifts a parameter: the point of F and ∇F is no longer this one.
        if let c = current, c.parameters != parameters { current = nil }
    }

    public func epochEnded() throws {}

    public var replicaChecksum: (checksum: UInt64, what: String) {
        (Checksum.hash(method.vectors, seed: Checksum.hash(parameters)), "parameters")
    }

    public func evaluate(_ data: Dataset) throws -> Evaluation {
        try hooks.outside("evaluate", step: step) {
            try evaluateCollectively(model: model, parameters: parameters, data: data, comm: comm, hooks: hooks, step: step,
                                     timeout: config.collectiveTimeout)
        }
    }

    public func checkParametersFinite() throws {
        guard parameters.contains(where: { !$0.isFinite }) else { return }
        throw TrainingFailure("training diverged by iteration \(step): the parameters are no longer finite; no checkpoint was written from them")
    }

    public func dataChecksum() throws -> UInt64 { try Checksum.dataset(train, comm: comm) }

    public var derivedIdentity: [String: String] {
        ["derived.model_shape": model.layout.views.map { "\($0.name)\($0.shape)" }.joined(separator: ","),
         "derived.method": settings.description,
         "derived.data_rows": String(train.globalRows)]
    }

    /// The parameters, the method's vectors, and as `strategy.*` metadata the method's scalars, ‖∇F(θ₀)‖ and
    /// why it stopped.
    public func checkpoint(identity: [String: String]) throws -> Checkpoint {
        var c = Checkpoint(step: step, epoch: step, parameters: parameters, optimizerState: method.vectors,
                           layout: model.layout.views.map { NamedShape(name: $0.name, shape: $0.shape) }, identity: identity)
        var state = method.scalars
        if let g0 = initialGradientNorm { state["initial_gradient_norm"] = String(g0.bitPattern, radix: 16) }
        if let finished { state["finished"] = finished }
        c.strategyState = state
        return c
    }

    public func restore(_ checkpoint: Checkpoint) throws {
        let mine = model.layout.views.map { NamedShape(name: $0.name, shape: $0.shape) }
        guard checkpoint.layout == mine, checkpoint.optimizerState.count == method.vectors.count else {
            throw TrainingFailure("the checkpoint holds tensors \(checkpoint.layout.map { "\($0.name)\($0.shape)" }.joined(separator: ", ")) "
                                  + "and \(checkpoint.optimizerState.count) optimizer values; this run needs "
                                  + "\(mine.map { "\($0.name)\($0.shape)" }.joined(separator: ", ")) and \(method.vectors.count)", kind: .configuration)
        }
        parameters = checkpoint.parameters
        method.vectors = checkpoint.optimizerState
        var state = checkpoint.strategyState
        initialGradientNorm = state.removeValue(forKey: "initial_gradient_norm").flatMap { UInt64($0, radix: 16) }.map { Double(bitPattern: $0) }
        finished = state.removeValue(forKey: "finished")
        method.scalars = state
        step = checkpoint.step
        current = nil
    }

    public func start(from initial: [Float]) throws {
        guard initial.count == parameters.count else {
            throw TrainingFailure("the starting model holds \(initial.count) parameters; this model needs \(parameters.count)", kind: .usage)
        }
        parameters = initial
        current = nil
    }

    public func outputParameters() throws -> [Float] { parameters }
}

/// Double-precision vector helpers of the full-batch methods (length p, plain loops: p is the parameter
/// count, small next to the passes over the rows).
enum Vector64 {
    static func dot(_ a: [Double], _ b: [Double]) -> Double {
        var s = 0.0
        for i in a.indices { s += a[i] * b[i] }
        return s
    }

    static func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }

    /// `y += alpha·x`.
    static func axpy(_ alpha: Double, _ x: [Double], _ y: inout [Double]) {
        for i in y.indices { y[i] += alpha * x[i] }
    }

    /// `θ + alpha·d`, rounded to the parameters' Float32.
    static func step(_ theta: [Float], _ alpha: Double, _ d: [Double]) -> [Float] {
        var out = theta
        for i in out.indices { out[i] = Float(Double(theta[i]) + alpha * d[i]) }
        return out
    }
}
