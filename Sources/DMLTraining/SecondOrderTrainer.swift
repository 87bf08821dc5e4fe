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
    public var description: String { kind == .lbfgs ? "lbfgs(memory=\(memory))" : "newton(tron, jacobi)" }
}

/// A point of the objective: the parameters, `F(θ)` (mean loss + regulariser), its mean data loss, and `∇F(θ)`.
public struct FullBatchPoint {
    public var parameters: [Float]
    public var objective: Double
    public var loss: Double
    public var gradient: [Double]
    public var gradientNorm: Double { Vector64.norm(gradient) }

    public init(parameters: [Float], objective: Double, loss: Double, gradient: [Double]) {
        (self.parameters, self.objective, self.loss, self.gradient) = (parameters, objective, loss, gradient)
    }
}

/// The collective operations a full-batch method iterates with. Every rank calls them in the same order with
/// the same arguments, and every rank receives the same bits, so every rank makes the same decisions.
public protocol FullBatchObjective: AnyObject {
    /// `F` and `∇F` at `parameters` (collective: one allreduce of parameters + 1 Doubles). A trial point's
    /// curvature is kept apart until `accept` makes it the current point's.
    func evaluate(_ parameters: [Float]) throws -> FullBatchPoint
    /// Makes the last evaluated point the accepted one: the one `hessianVector` works at and `segment` starts from.
    func accept()
    /// The parameters of the last `evaluate`.
    var lastEvaluated: [Float] { get }
    /// `F` and `dF/dt` at `θ₀ + t·(θ₁ − θ₀)`, θ₀ the accepted point and θ₁ the last evaluated one, from the
    /// margins their passes kept: no pass over the rows (O(rows·outputs)) and one allreduce of 2 Doubles.
    /// Margins are linear in θ, so this is F along the segment up to the margins' Float rounding.
    func segment(_ t: Double) throws -> (objective: Double, slope: Double)
    /// `∇²F(θ)·v` at the accepted point θ (collective: one allreduce of parameters + 1 Doubles).
    func hessianVector(_ v: [Double]) throws -> [Double]
    /// The diagonal of `∇²F(θ)` at the accepted point θ (collective: one pass and one allreduce of parameters + 1
    /// Doubles).
    func hessianDiagonal() throws -> [Double]
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
    /// The method these settings describe, for `count` parameters and the objective's regulariser λ.
    public func makeMethod(count: Int, weightDecay: Double) -> FullBatchMethod {
        switch kind {
        case .lbfgs: return LBFGS(settings: self, count: count)
        case .newton: return TrustRegionNewton(settings: self, count: count, weightDecay: weightDecay)
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
    /// This rank's rows (under `--reproducible` moved into whole leaves before the first iteration).
    public private(set) var train: Dataset
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
    /// Whether `train` is as the iterations use it (`attach`).
    private var attached = false

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
        method = settings.makeMethod(count: model.layout.count, weightDecay: Double(model.weightDecay))
        objective = Objective(self)
    }

    public var stepFigures: [(name: String, value: Double)] { figures }
    public var usesLearningRate: Bool { false }

    public func stepBody(number: Int) throws -> (loss: Double, rows: Int) {
        if started == nil { started = Date() }
        try attach()
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
        if settings.kind == .lbfgs { figures.append(("line_trials", Double(objective.segmentTrials))) }
        figures.append(("seconds", Date().timeIntervalSince(started!)))
        return (point.loss, train.globalRows)
    }

    /// `--reproducible`: moves the rows so that every rank holds whole leaves (`ExactLeafSums`), once, before the
    /// first pass. Collective.
    private func attach() throws {
        guard !attached else { return }
        attached = true
        guard config.reproducibleBlockRows != nil else { return }
        let targets = (0..<comm.size).map { ExactLeafSums.rows(of: $0, ranks: comm.size, rows: train.globalRows) }
        train = try train.movedIntoBlocks(to: targets, comm: comm, via: try comm.duplicate())
        objective = Objective(self)
    }

    private func converged(_ point: FullBatchPoint) -> Bool {
        settings.tolerance > 0 && point.gradientNorm <= settings.tolerance * initialGradientNorm!
    }

    /// Rows of one block of a pass (`ShardBlocks`): both products of a block run while its rows are in cache
    /// (1,024 rows of 78 non-zeros, the rcv1-like set's, are 640 KB). A pass over a streamed shard reads
    /// whole multiples of it, so the blocks, and the bits, are those of the shard in memory.
    public static let blockRows = 1024
    /// Bytes a pass over a streamed shard reads at a time (rounded to whole blocks, at least one).
    public static let streamChunkBytes = 16 << 20

    /// Rows a pass over `stream` reads at a time: whole blocks, about `chunkBytes` of them (at least one block).
    public static func chunkRows(_ stream: ShardStream, chunkBytes: Int = streamChunkBytes) -> Int {
        let rowBytes = stream.isSparse ? Swift.max(8, 8 * stream.nonZeros / Swift.max(stream.rows, 1)) : Swift.max(4, 4 * stream.features)
        return blockRows * Swift.max(1, chunkBytes / (rowBytes * blockRows))
    }

    /// This rank's rows for one pass, in blocks of `blockRows`: straight from memory, or read from the shard
    /// cache `chunkBytes` at a time (whole blocks, at least one), so a streamed pass holds one chunk, not the
    /// shard. The blocks are the same either way, so a pass gives the same bits from memory and from the cache.
    public static func blocks(of train: Dataset, chunkBytes: Int = streamChunkBytes) -> ShardBlocks {
        let n = train.rows, size = blockRows
        guard let stream = train.stream else {
            return ShardBlocks(rows: n) { body in
                try train.y.withUnsafeBufferPointer { y in
                    var first = 0
                    while first < n {
                        let count = Swift.min(size, n - first)
                        try train.withRows(first ..< first + count) { body(Batch(block: $0, y: y.baseAddress! + first), first) }
                        first += count
                    }
                }
            }
        }
        let chunk = chunkRows(stream, chunkBytes: chunkBytes)
        return ShardBlocks(rows: n) { body in
            try train.y.withUnsafeBufferPointer { y in
                var start = 0
                while start < n {
                    let end = Swift.min(start + chunk, n)
                    let rows = try stream.rows(start ..< end)
                    Dataset.withBlock(rows, features: train.features) { block in
                        var first = start
                        while first < end {
                            let count = Swift.min(size, end - first)
                            body(Batch(block: block.rows(first - start, count), y: y.baseAddress! + first), first)
                            first += count
                        }
                    }
                    start = end
                }
            }
        }
    }

    /// The collective evaluations, over this rank's rows, with the hooks on the first one of a step.
    final class Objective: FullBatchObjective {
        unowned let trainer: SecondOrderTrainer
        private var workspaces = [CurvatureWorkspace(), CurvatureWorkspace()]
        /// The parameters each workspace's pass was at.
        private var points: [[Float]] = [[], []]
        /// Which workspace holds the accepted point's curvature (the other takes trial points).
        private var accepted = 0
        private var pendingGate: Int?
        /// A pass's sums and then their reduction, in place: p gradient (or product) sums and the loss sum.
        private var sums: [Double]
        /// The regulariser along the segment from the accepted point to the last evaluated one (λ·(a, b, c)).
        private var segmentPenalty: (a: Double, b: Double, c: Double)?
        /// Segment evaluations since `beginStep` (the line search's trials that read no rows).
        private(set) var segmentTrials = 0
        /// Kept between calls so a Hessian-vector product allocates only the vector it returns: the product's
        /// direction as Float (p), and the regulariser's unit vector for the diagonal (p, made on first use).
        private var directionScratch: [Float]
        private lazy var unitVector = [Double](repeating: 1, count: sums.count - 1)
        let blocks: ShardBlocks
        /// `--reproducible`: the passes' sums exact, np-independent (nil: one Double allreduce each).
        let exact: ExactLeafSums?
        /// What `exact` holds: a vector pass's leaves (true) or a segment's scalars.
        private var exactVector = true

        init(_ trainer: SecondOrderTrainer) {
            self.trainer = trainer
            sums = [Double](repeating: 0, count: trainer.model.layout.count + 1)
            directionScratch = [Float](repeating: 0, count: trainer.model.layout.count)
            blocks = SecondOrderTrainer.blocks(of: trainer.train)
            exact = trainer.config.reproducibleBlockRows == nil ? nil
                : ExactLeafSums(comm: trainer.comm, model: trainer.model, globalRows: trainer.train.globalRows)
        }

        /// A pass over this rank's rows into `sums` (its last entry the loss sum, or 0): the model's plain pass,
        /// or under `--reproducible` each leaf kept for `allreduce`'s exact sum (`sums` then holds only the loss,
        /// for the hooks).
        private func vectorPass(_ leafPass: LeafPass, plain: (UnsafeMutablePointer<Double>) throws -> Double) throws {
            let p = sums.count - 1
            var loss = 0.0
            try pass {
                if let exact {
                    exactVector = true
                    loss = try exact.run(leafPass, blocks: blocks, workspace: workspaces[leafWorkspace(leafPass)])
                } else {
                    loss = try sums.withUnsafeMutableBufferPointer { try plain($0.baseAddress!) }
                }
            }
            sums[p] = loss
        }

        /// The workspace a pass works in: a new point's the trial one, the curvature passes the accepted one's.
        private func leafWorkspace(_ pass: LeafPass) -> Int {
            if case .lossAndGradient = pass { return 1 - accepted }
            return accepted
        }

        func beginStep(_ number: Int) {
            pendingGate = number
            segmentTrials = 0
        }

        /// The step's gate if no collective of the step has run it yet.
        func gateIfPending() throws {
            guard let number = pendingGate else { return }
            pendingGate = nil
            trainer.hooks.computed(step: number, loss: nil, rows: trainer.train.rows)
            try trainer.hooks.gate(step: number, completed: trainer.step)
        }

        /// Sums `values` (its last entry the loss sum, or 0) over the ranks in place, the first collective of a
        /// step running the hooks (the `nan` fault poisons the last entry). Throws when the gated sums are not finite.
        private func reduce(_ values: inout [Double], what: String) throws {
            if let number = pendingGate {
                pendingGate = nil
                var poisoned = Float(values[values.count - 1])
                trainer.hooks.computed(step: number, loss: &poisoned, rows: trainer.train.rows)
                if poisoned.isNaN { values[values.count - 1] = .nan }
                try trainer.hooks.gate(step: number, completed: trainer.step)
                try allreduce(&values, what: what)
                guard !values.contains(where: { !$0.isFinite }) else {
                    throw TrainingFailure("training diverged at iteration \(number): the \(what) is not finite; the parameters were not changed "
                                          + "and no checkpoint was written from them")
                }
                return
            }
            try allreduce(&values, what: what)
        }

        /// A streamed shard's read error in the last pass over the rows (`pass`), agreed before the next allreduce.
        private var readFailure: Error?

        /// Runs one pass over this rank's rows. A streamed shard's read error is kept (`readFailure`) rather than
        /// thrown here, so that this rank still joins the allreduce that follows, where every rank throws it.
        private func pass(_ body: () throws -> Void) throws {
            do { try body() } catch {
                guard trainer.train.isStreamed else { throw error }
                if readFailure == nil { readFailure = error }
            }
        }

        /// `values` summed over the ranks. Streamed rows first agree on whether every rank could read its rows
        /// (`readFailure`: then every rank throws it): one small collective per pass over the shard.
        private func allreduce(_ values: inout [Double], what: String) throws {
            try trainer.comm.watched("the \(what) allreduce of iteration \(trainer.step + 1)", seconds: trainer.config.collectiveTimeout) {
                if trainer.train.isStreamed { try trainer.comm.agree(error: readFailure) }
                if let exact {
                    values = try exact.reduce(vector: exactVector, poisoned: values[values.count - 1].isNaN)
                } else {
                    try values.withUnsafeMutableBufferPointer { try trainer.allreduce.run($0, op: .sum) }
                }
            }
            trainer.hooks.span("allreduce", step: trainer.step + 1)
        }

        func evaluate(_ parameters: [Float]) throws -> FullBatchPoint {
            let model = trainer.model, p = sums.count - 1
            let trial = 1 - accepted
            try parameters.withUnsafeBufferPointer { w in
                try vectorPass(.lossAndGradient(parameters: w.baseAddress!)) { g in
                    try model.dataLossAndGradient(parameters: w.baseAddress!, blocks: blocks, into: g, workspace: workspaces[trial])
                }
            }
            points[trial] = parameters
            segmentPenalty = nil
            try reduce(&sums, what: "objective")
            let n = Double(trainer.train.globalRows)
            var gradient = [Double](repeating: 0, count: p)
            for i in 0..<p { gradient[i] = sums[i] / n }
            let meanLoss = sums[p] / n
            let penalty = parameters.withUnsafeBufferPointer { w in
                gradient.withUnsafeMutableBufferPointer { model.addRegularizer(parameters: w.baseAddress!, gradient: $0.baseAddress!) }
            }
            return FullBatchPoint(parameters: parameters, objective: meanLoss + penalty, loss: meanLoss, gradient: gradient)
        }

        func accept() {
            accepted = 1 - accepted
            segmentPenalty = nil
        }

        var lastEvaluated: [Float] { points[1 - accepted] }

        func segment(_ t: Double) throws -> (objective: Double, slope: Double) {
            let model = trainer.model
            precondition(!points[accepted].isEmpty && !points[1 - accepted].isEmpty, "a segment needs an accepted and an evaluated point")
            if segmentPenalty == nil {
                segmentPenalty = points[accepted].withUnsafeBufferPointer { w0 in
                    points[1 - accepted].withUnsafeBufferPointer { w1 in model.regularizerAlongSegment(from: w0.baseAddress!, to: w1.baseAddress!) }
                }
            }
            let (z0, z1, k) = (workspaces[accepted].keptMargins, workspaces[1 - accepted].keptMargins, model.outputs)
            var pair = trainer.train.y.withUnsafeBufferPointer { y -> [Double] in
                let labels = y.baseAddress ?? UnsafePointer(bitPattern: 8)!
                if let exact {
                    // --reproducible: each leaf's loss and slope kept, summed exactly in `allreduce`.
                    exactVector = false
                    exact.run(rows: trainer.train.rows, scalars: 2) { first, rows in
                        let leaf = model.segmentLoss(from: z0 + first * k, to: z1 + first * k, t: t, labels: labels + first, rows: rows)
                        return [leaf.slope, leaf.loss]
                    }
                    return [0, 0]
                }
                let data = model.segmentLoss(from: z0, to: z1, t: t, labels: labels, rows: trainer.train.rows)
                return [data.slope, data.loss]
            }
            try reduce(&pair, what: "line search")
            segmentTrials += 1
            let n = Double(trainer.train.globalRows), r = segmentPenalty!
            return (pair[1] / n + 0.5 * (r.a + 2 * t * r.b + t * t * r.c), pair[0] / n + r.b + t * r.c)
        }

        func hessianDiagonal() throws -> [Double] {
            let model = trainer.model, p = sums.count - 1
            try vectorPass(.curvatureDiagonal) { out in
                try model.dataCurvatureDiagonal(blocks: blocks, workspace: workspaces[accepted], into: out)
                return 0
            }
            try reduce(&sums, what: "Hessian diagonal")
            let n = Double(trainer.train.globalRows)
            var out = [Double](repeating: 0, count: p)
            for i in 0..<p { out[i] = sums[i] / n }
            unitVector.withUnsafeBufferPointer { v in out.withUnsafeMutableBufferPointer { model.addRegularizerCurvature(v.baseAddress!, into: $0.baseAddress!) } }
            return out
        }

        func hessianVector(_ v: [Double]) throws -> [Double] {
            let model = trainer.model, p = sums.count - 1
            directionScratch.withUnsafeMutableBufferPointer { f in for i in 0..<p { f[i] = Float(v[i]) } }
            try directionScratch.withUnsafeBufferPointer { vp in
                try vectorPass(.hessianVector(vp.baseAddress!)) { out in
                    try model.dataHessianVector(vp.baseAddress!, blocks: blocks, workspace: workspaces[accepted], into: out)
                    return 0
                }
            }
            try reduce(&sums, what: "Hessian-vector product")
            let n = Double(trainer.train.globalRows)
            var out = [Double](repeating: 0, count: p)
            for i in 0..<p { out[i] = sums[i] / n }
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
            // --reproducible: sums with the same bits for any np (one row at a time, exact fixed point).
            if config.reproducibleBlockRows != nil {
                hooks.faults.hangIfPlanned(rank: comm.rank, step: step, at: .eval)
                return try reproducibleEvaluation(model: model, parameters: parameters, data: data, comm: comm, step: step,
                                                  timeout: config.collectiveTimeout)
            }
            return try evaluateCollectively(model: model, parameters: parameters, data: data, comm: comm, hooks: hooks, step: step,
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
