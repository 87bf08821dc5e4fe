import Foundation
import DMLComm
import DMLData
import DMLKernels

/// A staged model's gradient (an MLP: one layer at a time, the top layer first) in **buckets** of at least
/// `bucketBytes`, each reduced by its own allreduce, then the loss sum and row count; with `overlap`, a
/// bucket's allreduce starts on a communication thread as soon as the backward pass has finished it, while
/// the layers below are still computed (MPI_THREAD_SERIALIZED: one thread in MPI at a time; the gate runs
/// after the last bucket is done).
///
/// The buckets are the same with and without overlap, so the result has the same bits (`OverlapTests`).
/// Cost per step: one allreduce per bucket (α per bucket more than one flat allreduce); with overlap, the
/// buckets' communication hides behind the backward pass when a core is free for it.
final class BucketedReducer: GradientReducer {
    let comm: Communicator
    let count: Int
    let algorithm: AllreduceAlgorithm
    let overlap: Bool
    let collectiveTimeout: Double
    /// Ranges of the buffer reduced by one allreduce each, in this order: the merged stages (in the order
    /// backward completes them), then the loss-sum and row-count tail.
    let buckets: [Range<Int>]
    /// The bucket that stage i completes, if any.
    private let closedByStage: [Int?]
    private let sums: ReduceBuffer
    /// Runs the overlapped bucket allreduces, one at a time.
    private let overlapped: OverlappedBuckets
    private var stepNumber = 0

    var wantsStages: Bool { true }

    init(comm: Communicator, stages: [Range<Int>], count: Int, bucketBytes: Int, overlap: Bool,
         algorithm: AllreduceAlgorithm, collectiveTimeout: Double) {
        self.comm = comm
        self.count = count
        self.algorithm = algorithm
        self.overlap = overlap
        self.collectiveTimeout = collectiveTimeout
        sums = ReduceBuffer(count: count + 2)
        overlapped = OverlappedBuckets(comm: comm, collectiveTimeout: collectiveTimeout)
        (buckets, closedByStage) = Self.buckets(stages: stages, count: count, bucketBytes: bucketBytes)
    }

    /// The buckets of a staged model's stages (top layer first), each at least `bucketBytes` but the last,
    /// then the loss-sum and row-count tail; and the bucket each stage closes. The sharded update reduces the
    /// same pieces (`ReducerKind.sharded`), so it has the bucketed reducer's bits.
    static func buckets(stages: [Range<Int>], count: Int, bucketBytes: Int) -> (buckets: [Range<Int>], closedByStage: [Int?]) {
        var buckets: [Range<Int>] = [], closes: [Int?] = []
        var open: Range<Int>?
        for stage in stages {
            // Stages arrive top layer first, i.e. from the end of the buffer towards its start.
            open = open.map { stage.lowerBound ..< $0.upperBound } ?? stage
            if open!.count * MemoryLayout<Float>.size >= bucketBytes {
                buckets.append(open!)
                closes.append(buckets.count - 1)
                open = nil
            } else {
                closes.append(nil)
            }
        }
        if let last = open {
            buckets.append(last)
            closes[closes.count - 1] = buckets.count - 1
        }
        return (buckets + [count ..< count + 2], closes)
    }

    /// The algorithm's collective set-up (its own communicator, windows) on the main thread, before the
    /// first step, so the communication thread never runs it.
    func attach(_ train: Dataset) throws -> Dataset {
        try algorithm.prepare()
        return train
    }

    private func reduce(_ bucket: Range<Int>) throws {
        try algorithm.run(UnsafeMutableBufferPointer(start: sums.base + bucket.lowerBound, count: bucket.count), op: .sum)
    }

    private var phase: String { "the gradient allreduce of step \(stepNumber)" }

    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        stepNumber = number
        Vector.zero(sums.base, sums.buffer.count)  // over the kernel threads for a large model
        // The communication thread's waits run under this step's deadline.
        if overlap { overlapped.begin(phase: phase) }
        return [Contribution(rows: rows(holding), buffer: sums.base)]
    }

    func stageReady(_ stage: Int) {
        guard overlap, let b = closedByStage[stage] else { return }
        let bucket = buckets[b]
        overlapped.start { [unowned self] in try reduce(bucket) }
    }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        if overlap {
            try overlapped.wait()
            try gate()
            try comm.watched(phase, seconds: collectiveTimeout) { try reduce(buckets[buckets.count - 1]) }
        } else {
            try gate()
            try comm.watched(phase, seconds: collectiveTimeout) { for bucket in buckets { try reduce(bucket) } }
        }
        let whole = sums.buffer
        Vector.scale(1 / whole[count + 1], whole.baseAddress!, count)
        return whole
    }
}

/// The first error a communication thread hit, for the main thread to rethrow.
final class LockedError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?
    func record(_ e: Error) { lock.lock(); if first == nil { first = e }; lock.unlock() }
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }
}
