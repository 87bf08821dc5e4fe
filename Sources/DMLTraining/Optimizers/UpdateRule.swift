import Foundation
import DMLKernels

/// Where one update reads and writes: the parameters and the gradient of a run of coordinates, and the rule's
/// state copies for the same coordinates. Copy k of the state starts at `state + k·stateStride`, so one view
/// serves the whole replicated buffer (`stateStride` = the parameter count, pointers at coordinate 0) and a
/// slice of it (pointers moved to the slice's first coordinate) alike — and equally a rank that holds only its
/// 1/p slice of parameters and state (a sharded update: `stateStride` = the slice's length).
public struct UpdateBuffers {
    public var parameters: UnsafeMutablePointer<Float>
    public var gradient: UnsafePointer<Float>
    /// Copy 0 of the state (unused, and may be any pointer, when the rule keeps none).
    public var state: UnsafeMutablePointer<Float>
    /// Floats between copy k and copy k+1 of the state.
    public var stateStride: Int

    public init(parameters: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, state: UnsafeMutablePointer<Float>, stateStride: Int) {
        self.parameters = parameters
        self.gradient = gradient
        self.state = state
        self.stateStride = stateStride
    }

    /// The same buffers moved `offset` coordinates on (the stride stays): the view of a slice.
    public func advanced(by offset: Int) -> UpdateBuffers {
        UpdateBuffers(parameters: parameters + offset, gradient: gradient + offset, state: state + offset, stateStride: stateStride)
    }

    /// Copy `k` of the state, at this view's first coordinate.
    @inline(__always) public func state(_ k: Int) -> UnsafeMutablePointer<Float> { state + k * stateStride }
}

/// What every coordinate of one step shares: the 1-based step number `t` (Adam's bias correction) and the
/// learning rate.
public struct UpdateStep: Sendable {
    public var t: Int
    public var learningRate: Float
    public init(t: Int, learningRate: Float) {
        self.t = t
        self.learningRate = learningRate
    }
}

/// One element-wise update rule of `Optimizer` (`--optimizer sgd|momentum|adam|adamw|adagrad`): coordinate i's
/// new parameter and state depend only on coordinate i's parameter, gradient and state. A new rule is one file
/// with a type conforming to this protocol and one line in `UpdateRules.registered`.
///
/// Both update forms run the same arithmetic per coordinate, in the same order, so a coordinate gets the same
/// bits whichever form updates it; they differ only in which coordinates they visit. Weight decay arrives as
/// `lambda` (0 outside the decayed ranges: `Optimizer` cuts the parameters into runs).
public protocol UpdateRule: Sendable {
    /// The `--optimizer` name.
    static var name: String { get }
    /// Copies of the parameter buffer the rule keeps as state (checkpointed, broadcast and checksummed with
    /// the parameters): a property of the rule, not of its hyper-parameters.
    static var stateCopies: Int { get }
    /// The rule with the hyper-parameters of `config` (checked before training: `JobConfiguration.conflict`, `--adagrad-eps` > 0 for example).
    init(_ config: OptimizerConfig)
    /// A canonical description with every hyper-parameter that changes the update, `name(key=value,…)`:
    /// it is part of a checkpoint's identity, compared on resume.
    var description: String { get }
    /// True when the update leaves a coordinate whose gradient is +0 bit for bit as it was (parameter and
    /// state) without weight decay: then an update over only the touched coordinates of a sparse step is the
    /// dense update exactly (`Optimizer.updatesOnlyNonZeroGradients`).
    var leavesZeroGradientsAlone: Bool { get }
    /// Updates the `count` consecutive coordinates of `buffers`, each with weight decay `lambda`. Cost: O(count),
    /// streaming (2 + 2·stateCopies floats read and 1 + stateCopies written per coordinate), no allocation.
    func update(_ buffers: UpdateBuffers, count: Int, lambda: Float, step: UpdateStep)
    /// Updates only `coordinates` (indices into `buffers`, each once, in any order), without weight decay.
    /// Cost: O(coordinates.count), one random access per coordinate and state copy.
    func update(_ buffers: UpdateBuffers, at coordinates: UnsafeBufferPointer<Int32>, step: UpdateStep)
}

/// The registry of element-wise rules, keyed by their `--optimizer` name.
public enum UpdateRules {
    /// Every rule, in the order `--help` lists them. Add a new rule's type here.
    public static var registered: [any UpdateRule.Type] {
        [SGDRule.self, MomentumRule.self, AdamRule.self, AdamWRule.self, AdagradRule.self]
    }

    /// The rule named `name`, or nil.
    public static func rule(named name: String) -> (any UpdateRule.Type)? {
        registered.first { $0.name == name }
    }
}

/// A rule written as one coordinate's update (`apply`), from which both update forms follow — so they give a
/// coordinate the same bits by construction. For rules with nothing to compute once per call (momentum,
/// AdaGrad); Adam computes its bias corrections once per call and SGD's contiguous form is `Vector.axpy`, so
/// they write both forms themselves.
public protocol CoordinateRule: UpdateRule {
    /// Updates coordinate `i` of `buffers` (parameter and state) with weight decay `lambda`.
    func apply(_ i: Int, _ buffers: UpdateBuffers, lambda: Float, learningRate: Float)
}

extension CoordinateRule {
    public func update(_ b: UpdateBuffers, count: Int, lambda: Float, step: UpdateStep) {
        Vector.split(count) { lo, n in  // over the kernel threads for a large model: per coordinate, the same bits
            for i in lo..<lo + n { apply(i, b, lambda: lambda, learningRate: step.learningRate) }
        }
    }

    public func update(_ b: UpdateBuffers, at coordinates: UnsafeBufferPointer<Int32>, step: UpdateStep) {
        for c in coordinates { apply(Int(c), b, lambda: 0, learningRate: step.learningRate) }
    }
}
