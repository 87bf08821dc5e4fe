import DMLComm
import DMLData
import DMLKernels
import DMLModels

/// One group of rows of a step that this rank computes, and where its sums go: `buffer` holds
/// `[gradient sum | loss sum | row count]`, zeroed by the reducer. Most reducers want one group (all of
/// this rank's rows of the batch); the block chain wants one per block it holds.
public struct Contribution {
    public let rows: [Int]
    public let buffer: UnsafeMutablePointer<Float>
    /// nil: `rows` summed into `buffer` by one model call. Otherwise `rows` cut into leaves (consecutive runs,
    /// indices into `rows`), each summed into its own buffer of `[gradient | loss sum | row count]` by one pass
    /// over all of `rows` (`Model.leafGradients`: the buffers need no zeroing); `buffer` is the first leaf's.
    public var leaves: [GradientLeaf]? = nil
    /// The rows' features and targets, gathered by the reducer (it may have fetched rows that other ranks hold),
    /// valid until `finish`; nil: the trainer gathers `rows` from its shard.
    public var batch: Batch? = nil
}

/// How a rank's share of a step's gradient becomes the same averaged gradient on every rank: the part of
/// the step that varies (one allreduce of one buffer, layer buckets overlapped with the backward pass, a
/// chain in global block order, a 16-bit wire). As PyTorch's c10d `Reducer`: the step calls it in fixed
/// phases, and the reducer owns the buffers, the buckets and the communication.
///
/// ```
/// begin(step)          → the groups of rows to compute, each with its zeroed buffer
/// stageReady(i)        ← during the backward pass of a staged model (wantsStages), as each stage is final
/// finish(step, gate)   → [mean gradient | loss sum | row count], the same bits on every rank
/// ```
/// Invariants: `finish` calls `gate` exactly once, when none of the reducer's own communication is in
/// flight; every element of the result is reduced in an order that depends only on the number of ranks
/// (and the reducer's fixed structure: buckets, blocks), so every rank holds the same bits.
///
/// A new strategy is one file with a class conforming to this protocol, plus its case in `ReducerKind`.
public protocol GradientReducer: AnyObject {
    /// True when the model should report its gradient stages (`StagedGradientModel`) through `stageReady`.
    var wantsStages: Bool { get }
    /// The data this reducer trains on, given the rank's rows: the same, or rows moved between ranks (the
    /// block chain moves them into its block plan). Collective; called once, before the first step.
    func attach(_ train: Dataset) throws -> Dataset
    /// The groups of rows of step `number` (1-based) to compute; `rows(in:)` gives the batch's rows among
    /// a range of global rows, `holding` is this rank's range.
    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution]
    /// The run's batch order, once, before the first step: a reducer that fetches a step's rows ahead of it
    /// (`ReproducibleReducer`'s leaf balance) reads the next step's batch from it.
    func plan(_ sampler: BatchSampler)
    /// A staged model has finished stage `i` of the (single) group's gradient.
    func stageReady(_ stage: Int)
    /// Completes step `number`'s reduction (`globalRows`: the batch's rows over all ranks). Returns the mean
    /// gradient, followed by the global loss sum and row count.
    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float>
    /// An epoch boundary after step `completed`: the data to train on from now (the block chain may move
    /// rows towards faster ranks). Collective.
    func epochEnded(_ train: Dataset, completed: Int) throws -> Dataset
    /// Sparse data: the coordinates of the gradient that this step's groups may have written, sorted and
    /// unique (`Model.gradientCoordinates(touchingColumns:)` of the batch's columns), handed over after the
    /// computation and before `finish`; a promise that every other gradient coordinate of the groups'
    /// buffers is still +0. A reducer that reduces only touched coordinates uses them instead of scanning the
    /// buffer; the others ignore them. Not called: the reducer finds them itself, if it needs them.
    func touched(_ coordinates: [Int32])
    /// True when `touched` is used this step (the trainer then maps the batch's columns; others skip that work).
    var wantsTouchedCoordinates: Bool { get }
    /// The gradient coordinates of the last `finish`'s result that may be non-zero, sorted (valid until the
    /// next `begin`); every other coordinate of the mean gradient is exactly +0 on every rank. nil: any may be.
    var reducedSupport: UnsafeBufferPointer<Int32>? { get }
    /// Which coordinates this rank updates and keeps optimizer state for: nil (every reducer that returns the
    /// whole mean gradient on every rank) means all of them; a sharded update (`ShardedReducer`) returns its
    /// shards, and `finish` then holds the mean gradient at the owned coordinates only.
    var updateShards: UpdateShards? { get }
    /// The divergence guard's question about `finish`'s result: is any coordinate of the mean gradient not
    /// finite? The same answer on every rank. By default the reduced support (or every coordinate) is scanned;
    /// a sharded update answers from the global count its `finish` agreed on.
    func gradientIsNonFinite(_ reduced: UnsafeMutableBufferPointer<Float>) -> Bool
    /// After the update of this rank's owned coordinates: gives every rank the whole updated parameters (a
    /// sharded update's allgather). Collective; nothing when every rank updated everything.
    func gather(parameters: UnsafeMutableBufferPointer<Float>, step number: Int) throws
}

extension GradientReducer {
    public func attach(_ train: Dataset) throws -> Dataset { train }
    public func epochEnded(_ train: Dataset, completed: Int) throws -> Dataset { train }
    public func plan(_ sampler: BatchSampler) {}
    public func stageReady(_ stage: Int) {}
    public var wantsStages: Bool { false }
    public func touched(_ coordinates: [Int32]) {}
    public var wantsTouchedCoordinates: Bool { false }
    public var reducedSupport: UnsafeBufferPointer<Int32>? { nil }
    public var updateShards: UpdateShards? { nil }
    public func gather(parameters: UnsafeMutableBufferPointer<Float>, step number: Int) throws {}
    public func gradientIsNonFinite(_ reduced: UnsafeMutableBufferPointer<Float>) -> Bool {
        // A sparse reducer's result is +0 off its support: only the support can be non-finite.
        let p = reduced.count - 2
        // Dense: one vectorised pass (max |g| as bits, over the kernel threads), not a scalar loop.
        return reducedSupport.map { s in s.contains { !reduced[Int($0)].isFinite } }
            ?? (FixedPoint.largestMagnitude(reduced.baseAddress!, p) == .infinity)
    }
}

/// How a buffer of gradient sums crosses the wire, as c10d's communication hooks and Horovod's
/// prescale/postscale: the allreduce algorithm and whether the values are divided by the batch's rows
/// before the sum (a 16-bit wire cannot hold a sum over a large batch: fp16 ends at 65504) or after.
public struct ReductionHook {
    public let algorithm: AllreduceAlgorithm
    /// True: divide by the global rows before the allreduce; false: after.
    public let prescales: Bool

    /// Float32 on the wire (`--allreduce`'s algorithm), divided after the sum.
    public static func plain(_ algorithm: AllreduceAlgorithm) -> ReductionHook { ReductionHook(algorithm: algorithm, prescales: false) }

    /// 16-bit values on the wire (`--compress`), divided before the sum; the buffer's last two values (loss
    /// sum and row count) travel exactly through `exact`.
    public static func compressed(_ format: WireFormat, exact: AllreduceAlgorithm, errorFeedback: Bool, comm: Communicator) -> ReductionHook {
        ReductionHook(algorithm: CompressedAllreduce(comm: comm, format: format, exact: exact, exactTail: 2, errorFeedback: errorFeedback),
                      prescales: true)
    }
}

/// The reduction strategies, by what selects them. Registration of a new `GradientReducer` is a case here.
public enum ReducerKind: Sendable, Equatable {
    /// One buffer, one allreduce (any hook).
    case flat
    /// A staged model's layers in buckets of at least `bucketBytes`, each one allreduce, optionally
    /// overlapped with the backward pass.
    case bucketed(bucketBytes: Int, overlap: Bool)
    /// `--balance`: blocks of rows summed in global block order along a chain of ranks.
    case blockChain
    /// Only the touched coordinates (`SparseReducer`), by `--allreduce sparse` (`auto` nil), or chosen by
    /// density on the first step under `--allreduce auto` (`auto`: the dense algorithm and the largest touched
    /// fraction for which the sparse path is taken).
    case sparse(auto: SparseSelection?)
    /// `--shard-update`: the ring's reduce-scatter, each rank's update of its owned chunks, the allgather of
    /// the parameters (`ShardedReducer`); over the MLP's buckets when the unsharded run would use them.
    case sharded(bucketBytes: Int, overlap: Bool)
    /// `--reproducible`: leaves of whole blocks summed as exact fixed-point integers (`ReproducibleReducer`);
    /// `sharded` (with `--shard-update`): each rank updates only its slice and the parameters are allgathered.
    case reproducible(sharded: Bool)
    /// `--reproducible` with CSR rows: the same leaves, summed as exact integers over the touched coordinates
    /// only (`ReproducibleSparseReducer`).
    case reproducibleSparse

    /// The strategy a configuration selects: the sharded update under `shardUpdate`; the block chain under `balance`; the sparse reducer for
    /// `--allreduce sparse` on a plain wire, and under `auto` for a model with one stage on a plain wire (it
    /// then picks sparse or dense by the first step's density); buckets for a staged model on a plain wire (a
    /// 16-bit wire takes the whole buffer: its exact tail and error feedback are positional); otherwise one
    /// buffer. (`JobConfiguration.conflict` refuses `sparse` with `--balance`, `--compress`, `--overlap`.)
    /// `sparseRows`: the training rows are CSR held in memory.
    public static func select(_ config: TrainingConfig, model: Model, hook: ReductionHook, sparseRows: Bool = false) -> ReducerKind {
        if config.reproducibleBlockRows != nil { return sparseRows && !config.shardUpdate ? .reproducibleSparse : .reproducible(sharded: config.shardUpdate) }
        if config.shardUpdate { return .sharded(bucketBytes: config.bucketBytes, overlap: config.overlap) }
        if config.balance { return .blockChain }
        if !hook.prescales, hook.algorithm is SparseAllreduceAlgorithm { return .sparse(auto: nil) }
        if !hook.prescales, hook.algorithm is AutoAllreduce, !config.overlap,
           (model as? StagedGradientModel).map({ $0.gradientStages.count <= 1 }) ?? true {
            return .sparse(auto: SparseSelection())
        }
        if !hook.prescales, let staged = model as? StagedGradientModel, staged.gradientStages.count > 1 {
            return .bucketed(bucketBytes: config.bucketBytes, overlap: config.overlap)
        }
        return .flat
    }

    /// Builds the reducer for a gradient of `count` values.
    public func make(comm: Communicator, model: Model, hook: ReductionHook, collectiveTimeout: Double,
                     note: @escaping (String) -> Void) -> GradientReducer {
        let count = model.layout.count
        switch self {
        case .flat:
            return FlatReducer(comm: comm, count: count, hook: hook, collectiveTimeout: collectiveTimeout)
        case let .bucketed(bytes, overlap):
            return BucketedReducer(comm: comm, stages: (model as! StagedGradientModel).gradientStages, count: count,
                                   bucketBytes: bytes, overlap: overlap && comm.allowsSerializedThreads,
                                   algorithm: hook.algorithm, collectiveTimeout: collectiveTimeout)
        case let .reproducible(sharded):
            return ReproducibleReducer(comm: comm, count: count, collectiveTimeout: collectiveTimeout, sharded: sharded)
        case .reproducibleSparse:
            return ReproducibleSparseReducer(comm: comm, model: model, collectiveTimeout: collectiveTimeout)
        case .blockChain:
            return BlockChainReducer(comm: comm, count: count, collectiveTimeout: collectiveTimeout, note: note)
        case let .sharded(bucketBytes, overlap):
            // The pieces of the unsharded run over --allreduce ring: the MLP's buckets and the tail, or one buffer;
            // with overlap, reduce-scattered as the backward pass completes them.
            // A 16-bit wire takes the whole gradient, as the unsharded run's flat reducer does.
            if let compressed = hook.algorithm as? CompressedAllreduce {
                return ShardedReducer(comm: comm, count: count, pieces: nil, compressed: compressed, collectiveTimeout: collectiveTimeout)
            }
            guard let staged = model as? StagedGradientModel, staged.gradientStages.count > 1 else {
                return ShardedReducer(comm: comm, count: count, pieces: nil, collectiveTimeout: collectiveTimeout)
            }
            let (pieces, closes) = BucketedReducer.buckets(stages: staged.gradientStages, count: count, bucketBytes: bucketBytes)
            return ShardedReducer(comm: comm, count: count, pieces: pieces, closedByStage: overlap && comm.allowsSerializedThreads ? closes : nil,
                                  collectiveTimeout: collectiveTimeout)
        case let .sparse(auto):
            return SparseReducer(comm: comm, count: count, sparse: hook.algorithm as? SparseAllreduceAlgorithm ?? SparseAllreduce(comm: comm),
                                 dense: auto == nil ? nil : hook.algorithm, selection: auto, collectiveTimeout: collectiveTimeout, note: note)
        }
    }
}

/// A zeroed, 64-byte aligned Float buffer owned by a reducer (freed with it).
final class ReduceBuffer {
    let base: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        base = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(1, count) * 4, alignment: 64).bindMemory(to: Float.self, capacity: Swift.max(1, count))
        base.initialize(repeating: 0, count: count)
    }
    deinit { base.deallocate() }
    var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: base, count: count) }
}
