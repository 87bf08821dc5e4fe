internal import CDMLKernels

/// Pairwise combination of a stream of equal-width partial sums: how the kernels that sum over many rows
/// (`Gemm.skinnyTN`, `Gemm.gemvT`, `Gemm.columnSums`) keep their rounding error from growing with the rows.
///
/// Such a kernel cuts the rows into blocks of `Gemm.rowBlock`, sums each block in registers or a small
/// buffer, and hands the block's `width` sums here. Partials are merged like a binary counter: slot l holds
/// the sum of 2^l consecutive partials, and a new partial absorbs the filled slots below the first empty
/// one, smallest first (`((new + s₀) + s₁) + …`, each step adding two sums of the same number of blocks, as
/// a pairwise sum does). A row's term therefore goes through at most `rowBlock` additions inside its block
/// and ⌊log₂ blocks⌋ + 1 after it, instead of one addition per later row: a naive Float32 sum of n rows has
/// an error bound growing like n·ε, this one like (rowBlock + log₂(n / rowBlock))·ε.
///
/// Invariants: the order of additions depends only on the number of partials (and the width), never on the
/// values or the thread, so the result is deterministic: every rank that sums the same rows gets the same
/// bits. Storage: `slots(forPartials:) · width` floats owned by the caller (a `GemmWorkspace`'s
/// `sums(_:)`); merging costs one addition per float per partial, amortised (a binary counter's carries).
struct PairwiseSums {
    private let base: UnsafeMutablePointer<Float>
    private let width: Int
    /// Partials committed so far.
    private(set) var count = 0

    /// An empty accumulator over `slots(forPartials:) · width` floats at `base` (their contents are ignored).
    init(_ base: UnsafeMutablePointer<Float>, width: Int) {
        self.base = base
        self.width = width
    }

    /// Slots needed to combine `partials` partials: ⌊log₂ partials⌋ + 1 (1 for none or one).
    static func slots(forPartials partials: Int) -> Int {
        partials <= 1 ? 1 : Int.bitWidth - partials.leadingZeroBitCount
    }

    /// Where the next partial must be written: `width` floats to overwrite, then `commit()`.
    @inline(__always)
    func next() -> UnsafeMutablePointer<Float> { base + (~count).trailingZeroBitCount * width }

    /// Merges the partial just written at `next()` with the earlier sums of its size.
    @inline(__always)
    mutating func commit() {
        let level = (~count).trailingZeroBitCount
        let sum = base + level * width
        for l in 0..<level { Self.add(base + l * width, into: sum, width) }
        count += 1
    }

    /// The sum of every partial committed (at least one), the remaining slots added from the smallest sum to
    /// the largest. Returns the slot that holds it; the accumulator is spent.
    @inline(__always)
    mutating func total() -> UnsafeMutablePointer<Float> {
        precondition(count > 0, "PairwiseSums.total of no partials")
        var bits = count
        var sum = base + bits.trailingZeroBitCount * width
        bits &= bits - 1
        while bits != 0 {
            let larger = base + bits.trailingZeroBitCount * width
            Self.add(sum, into: larger, width)
            sum = larger
            bits &= bits - 1
        }
        count = 0
        return sum
    }

    /// `y[i] += x[i]` (C, dispatched).
    @inline(__always)
    static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        dml_kernels().pointee.add(x, y, n)
    }
}
