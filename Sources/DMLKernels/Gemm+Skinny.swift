internal import CDMLKernels

/// The two gemm shapes of a classifier's output layer, where one side is only a few classes wide:
///
/// - forward `Z = X·Wᵀ` (NT) with `n` = classes ≤ `skinnyLimit`;
/// - backward `∂W += Dᵀ·X` (TN) with `m` = classes ≤ `skinnyLimit`.
///
/// The packed kernel pads such a side to its 16-wide (or 6-high) tile and copies all of X into its packing
/// buffers first; these kernels read X where it lies, once per group of five classes, with the five
/// classes' accumulators in registers. `Gemm.gemm` routes these shapes here. Same flops (2·m·n·k), no
/// packing; the summation order is fixed by the shapes (and the same on every ISA), so results are
/// deterministic. The register kernels are C (CDMLKernels: `skinny_nt`, `skinny_tn_block`), dispatched at run
/// time; the row blocks, column panels and pairwise combination stay here. The backward kernel
/// sums over the batch's rows, so it sums blocks of `rowBlock` rows and combines them pairwise (its error
/// then does not grow with the rows per rank); its scratch comes from the `GemmWorkspace`.
extension Gemm {
    /// Widest skinny side routed to these kernels (above it the packed kernel's tile is well used).
    public static let skinnyLimit = 16

    /// `C = alpha·A·Bᵀ + beta·C`: `A` is `m × k` (row stride `lda`), `B` is `n × k` (row stride `ldb`),
    /// `C` is `m × n`, `n ≤ skinnyLimit`. Two rows of A at a time against five rows of B: per 8 columns of
    /// k, seven loads and ten FMAs (AVX-512: four rows, two rows' eight lanes per register, ten FMAs for 4 × 5);
    /// eight-lane partial sums over k, summed in a fixed tree, then the tail.
    static func skinnyNT(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        dml_kernels().pointee.skinny_nt(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    }

    /// `C = alpha·Aᵀ·B + beta·C`: `A` is stored `k × m` (row stride `lda`), `B` is `k × n` (row stride `ldb`),
    /// `C` is `m × n`, `m ≤ skinnyLimit`: a classifier's `∂W = Dᵀ·X`, a sum over the k rows of a batch.
    ///
    /// Columns go in panels of `skinnyPanel`; in a panel the rows go in blocks of `rowBlock`, each block summed
    /// in registers (`skinny_tn_block`: five classes × a strip of 16 columns, or 32 with AVX-512, in ten
    /// vector accumulators) into an `m × cols` partial, and the partials are combined pairwise
    /// (`PairwiseSums`), so the rounding error grows like `rowBlock + log₂(k / rowBlock)` additions rather
    /// than k. A block's rows (`rowBlock × skinnyPanel` floats of B, 1 MiB at most) are read from memory once
    /// and from cache by the other groups of five classes. Scratch: `(⌊log₂ blocks⌋ + 1)·m·cols` floats from
    /// `workspace`; storing and merging the partials costs about 3·m·cols memory operations per block
    /// (a few per cent of the block's FMAs). With a single block (k ≤ `rowBlock`: a mini-batch) the sums go
    /// straight from registers to C.
    static func skinnyTN(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                         b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                         workspace: GemmWorkspace) {
        let kernels = dml_kernels().pointee
        if k <= rowBlock {
            return kernels.skinny_tn_block(m, n, k, a, lda, b, ldb, alpha, beta, c, ldc)
        }
        let blocks = (k + rowBlock - 1) / rowBlock
        let slots = workspace.sums(PairwiseSums.slots(forPartials: blocks) * m * min(n, skinnyPanel))
        var j0 = 0
        while j0 < n {
            let cols = min(skinnyPanel, n - j0)
            var sums = PairwiseSums(slots, width: m * cols)
            var p0 = 0
            while p0 < k {
                kernels.skinny_tn_block(m, cols, min(rowBlock, k - p0), a + p0 * lda, lda, b + p0 * ldb + j0, ldb,
                                        1, 0, sums.next(), cols)
                sums.commit()
                p0 += rowBlock
            }
            let total = sums.total()
            for i in 0..<m { kernels.write_back(cols, total + i * cols, alpha, beta, c + i * ldc + j0) }
            j0 += cols
        }
    }
}
