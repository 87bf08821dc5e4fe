internal import CDMLKernels

/// The packed gemm on `KernelThreads`: B packed once into one shared buffer by all threads, then C cut into a
/// grid of row × column blocks, each thread packing only its own block's rows of A.
///
/// Earlier the threads split C into fixed strips of 32 columns and every strip packed all of A again (the
/// MLP's ∂W₁ = δᵀ·X at batch 256 packed its 256 × 256 A 25 times, as much work as its FMAs): two threads ran the
/// MLP step only 1.0–1.16× as fast as one. Now each panel of A and B is packed once, whatever T.
///
/// Bits: each element of C is computed by the micro-tile exactly as in `serial` — one FMA chain per `kc` panel,
/// the panels added into C in order (a panel is finished everywhere before the next is added) — and neither the
/// tile's shape nor which thread runs it enters that chain. So the grid may follow the thread count (about four
/// blocks per thread, for balance on a loaded machine) and the bits still do not depend on T.
///
/// Cost: the single-threaded flops and packing, plus two parallel calls (pack, compute) per group of panels that
/// fits the caller's `kc × nc` packing buffer (one group for k·n ≤ kc·nc: the MLP's shapes), about 1–2 µs each.
extension Gemm {
    static func parallelPacked(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                               a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                               beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: GemmEpilogue?) {
        let kernels = dml_kernels().pointee  // one ISA for the whole call: packing and tiles agree on nr
        let nr = kernels.gemm_nr, tile = kernels.gemm_tile
        let shared = GemmWorkspace.current.packB  // the caller's: it waits while the threads read it
        let capacity = kc * nc
        let threads = KernelThreads.count
        var jc = 0
        while jc < n {
            let ncb = Swift.min(nc, n - jc)
            let slivers = (ncb + nr - 1) / nr, width = slivers * nr
            // Panels of k packed together: as many as the shared buffer holds (all of them for the MLP's shapes).
            let panelsPerGroup = Swift.max(1, capacity / (kc * width))
            // The grid over this column block: rows in whole slivers of mr, columns in whole slivers of nr.
            let rowSlivers = (m + mr - 1) / mr
            let rowParts = Swift.min(rowSlivers, 4 * threads)
            let columnParts = Swift.min(slivers, Swift.max(1, (4 * threads + rowParts - 1) / rowParts))
            var pc0 = 0
            while pc0 < k {
                let span = Swift.min(panelsPerGroup * kc, k - pc0)
                let panels = (span + kc - 1) / kc
                // Pack: one unit per (panel, sliver); panel q at shared + q·kc·width, its sliver t at + t·nr·kcb.
                KernelThreads.parallel(units: panels * slivers) { begin, end in
                    for u in begin..<end {
                        let q = u / slivers, t = u % slivers
                        let pc = pc0 + q * kc, kcb = Swift.min(kc, k - pc)
                        packPanelB(transB, b, ldb, pc, jc + t * nr, kcb, Swift.min(nr, ncb - t * nr), nr,
                                   shared + q * kc * width + t * nr * kcb)
                    }
                }
                // Compute: each block packs its rows of A per panel (in chunks of mc rows) and runs its tiles.
                KernelThreads.parallel(units: rowParts * columnParts) { begin, end in
                    let packA = GemmWorkspace.current.packA
                    for u in begin..<end {
                        let r = u / columnParts, s = u % columnParts
                        let i0 = r * rowSlivers / rowParts * mr, i1 = Swift.min(m, (r + 1) * rowSlivers / rowParts * mr)
                        let j0 = s * slivers / columnParts * nr, j1 = Swift.min(ncb, (s + 1) * slivers / columnParts * nr)
                        var ic = i0
                        while ic < i1 {
                            let mcb = Swift.min(mc, i1 - ic)
                            for q in 0..<panels {
                                let pc = pc0 + q * kc, kcb = Swift.min(kc, k - pc)
                                packBlockA(transA, a, lda, ic, pc, mcb, kcb, packA)
                                tiles(tile, nr: nr, kcb: kcb, packA: packA, rows: mcb, packB: shared + q * kc * width,
                                      columns: j0..<j1, c: c + ic * ldc + jc, ldc: ldc, alpha: alpha,
                                      beta: pc == 0 ? beta : 1,
                                      epilogue: pc + kcb == k ? epilogue?.offset(row: ic, column: jc) : nil)
                            }
                            ic += mc
                        }
                    }
                }
                pc0 += span
            }
            jc += ncb
        }
    }
}
