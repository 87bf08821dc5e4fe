import DMLComm
import DMLKernels

/// One buffer `[gradient | loss sum | row count]`, one allreduce per step through the hook (`--allreduce`'s
/// algorithm, or a 16-bit wire that scales before the sum). The default for models with one stage and for
/// compressed gradients.
///
/// Cost per step: one allreduce of `count + 2` floats (see the algorithm's), one pass to scale.
final class FlatReducer: GradientReducer {
    let comm: Communicator
    let count: Int
    let hook: ReductionHook
    let collectiveTimeout: Double
    private let sums: ReduceBuffer

    init(comm: Communicator, count: Int, hook: ReductionHook, collectiveTimeout: Double) {
        self.comm = comm
        self.count = count
        self.hook = hook
        self.collectiveTimeout = collectiveTimeout
        sums = ReduceBuffer(count: count + 2)
    }

    func begin(step number: Int, holding: Range<Int>, rows: (Range<Int>) -> [Int]) -> [Contribution] {
        Vector.zero(sums.base, sums.buffer.count)  // over the kernel threads for a large model
        return [Contribution(rows: rows(holding), buffer: sums.base)]
    }

    func finish(step number: Int, globalRows: Int, gate: () throws -> Void) throws -> UnsafeMutableBufferPointer<Float> {
        try gate()
        let whole = sums.buffer, p = count
        if hook.prescales { Vector.scale(1 / Float(globalRows), whole.baseAddress!, p) }
        try comm.watched("the gradient allreduce of step \(number)", seconds: collectiveTimeout) {
            try hook.algorithm.run(whole, op: .sum)
        }
        if !hook.prescales { Vector.scale(1 / whole[p + 1], whole.baseAddress!, p) }
        return whole
    }
}
