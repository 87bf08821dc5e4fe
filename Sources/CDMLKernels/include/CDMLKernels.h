#ifndef DML_CDMLKERNELS_H
#define DML_CDMLKERNELS_H
// DML's arithmetic kernels in C, each compiled once per instruction set (ISA) with function-level target
// attributes and chosen once, at load time, from the CPU (CPUID and the OS's saved register state), as BLIS and
// OpenBLAS do. No compiler flag is needed, so a package that depends on DML by version gets the same code.
//
// Invariant: every ISA's kernels compute the same bits for the same inputs. Each output element is formed by
// the same operations in the same order whatever the vector width (sums over k are per-element fused
// multiply-add chains; horizontal sums and accumulator layouts are fixed at 8 lanes; no contraction of a*b+c
// by the compiler), so a run's bits do not depend on the CPUs its ranks land on: a job over AVX-512 and
// AVX2-only nodes writes the same model as one on either, with identical replicas. The generic kernels reach
// those bits through fmaf (slow where the CPU lacks FMA).
//
// Sizes are `long` (Swift `Int`); matrices are row-major with a leading dimension (elements between rows).
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The instruction sets kernels are compiled for, from the baseline up.
typedef enum {
    DML_ISA_GENERIC = 0,  ///< any CPU: the C compiler's baseline (SSE2 on x86-64, NEON on arm64), fmaf for FMA
    DML_ISA_AVX2 = 1,     ///< x86-64 with AVX2, FMA and F16C (Haswell, 2013, and Zen 1 onwards)
    DML_ISA_AVX512 = 2,   ///< x86-64 with AVX-512 F/VL/DQ/BW (Skylake-SP, Ice Lake, Zen 4, Zen 5)
    DML_ISA_COUNT = 3
} dml_isa;

/// What a gemm tile applies to C after its write-back (each field optional), offset to the tile by the caller.
typedef struct dml_epilogue {
    const float *_Nullable bias;  ///< added per column: C[i, j] += bias[j]
    const float *_Nullable mask;  ///< C[i, j] = 0 where mask[i·ldm + j] <= 0
    long ldm;
    int relu;  ///< C = max(C, 0) (after the bias, before the mask)
} dml_epilogue;

/// One ISA's kernels. Every pointer is set; `gemm_nr` is the width its micro-tile wants B packed in.
typedef struct {
    dml_isa isa;
    const char *_Nonnull name;
    /// Micro-tile: rows (A packed in slivers of `gemm_mr` rows, the same for every ISA) and columns.
    long gemm_mr, gemm_nr;
    /// C[0..<rows, 0..<cols] = wb(Σ_p a[p·mr + i]·b[p·nr + j]) over p < kc from packed slivers, where
    /// wb(s) = s·alpha if beta == 0 (C not read), fma(s, alpha, C) if beta == 1, else fma(s, alpha, C·beta).
    /// Each element's sum is one fma chain over p, so the tile shape does not change the bits.
    /// The epilogue (`ep`, NULL for none; pointers at the tile's first row and column) then applies, in order and
    /// per element, exactly what the separate passes compute: v = v + bias[j] (axpy's fma(1, bias, v)), v = v < 0 ? 0
    /// : v (ReLU), v = mask[i·ldm + j] <= 0 ? 0 : v (ReLU's derivative from the activations).
    void (*_Nonnull gemm_tile)(long kc, const float *_Nonnull a, const float *_Nonnull b, float *_Nonnull c,
                               long ldc, long rows, long cols, float alpha, float beta,
                               const struct dml_epilogue *_Nullable ep);
    /// The FMA peak's probe: `iters` iterations of 12 independent chains of vector FMAs (as many accumulators as
    /// the gemm tile), each iteration 24·(vector width) flops (`fma_flops_per_iter`); returns a sum of the chains
    /// so that nothing is removed.
    float (*_Nonnull fma_peak)(long iters);
    long fma_flops_per_iter;
    /// C = wb(A·Bᵀ), A m × k, B n × k (n ≤ 16 classes), C m × n: two rows of A (four with AVX-512, two rows'
    /// lanes per register) against five rows of B, eight-lane partial sums over k combined in a fixed tree, then
    /// the k mod 8 tail.
    void (*_Nonnull skinny_nt)(long m, long n, long k, float alpha, const float *_Nonnull a, long lda,
                               const float *_Nonnull b, long ldb, float beta, float *_Nonnull c, long ldc);
    /// out[i·ldo + j] = wb(Σ_{p < rows} A[p·lda + i]·B[p·ldb + j]) for i < m, j < cols: five classes × a strip
    /// of columns in registers while the rows of B stream past (the few-class ∂W = Dᵀ·X of one row block).
    void (*_Nonnull skinny_tn_block)(long m, long cols, long rows, const float *_Nonnull a, long lda,
                                     const float *_Nonnull b, long ldb, float alpha, float beta,
                                     float *_Nonnull out, long ldo);
    /// y = wb(A·x) (A m × n): four rows share each load of x; per row two eight-lane accumulators (even and odd
    /// blocks of 8 columns) added, summed in the fixed tree, then the tail; rows past a multiple of 4 as dot.
    void (*_Nonnull gemv)(long m, long n, float alpha, const float *_Nonnull a, long lda,
                          const float *_Nonnull x, float beta, float *_Nonnull y);
    /// t[j] += Σ_{r < rows} x[r]·A[r·lda + j] (x NULL: weight 1, plain additions), rows taken four at a time in
    /// order: t = fma(x3, r3, fma(x2, r2, fma(x1, r1, fma(x0, r0, t)))).
    void (*_Nonnull add_rows)(long rows, long n, const float *_Nonnull a, long lda, const float *_Nullable x,
                              float *_Nonnull t);
    /// c[j] = wb(s[j]) for j < n: a sum computed elsewhere written into its destination.
    void (*_Nonnull write_back)(long n, const float *_Nonnull s, float alpha, float beta, float *_Nonnull c);
    /// Σ x[i]·y[i]: four eight-lane accumulators over blocks of 32, a fixed tree, then the tail.
    float (*_Nonnull dot)(const float *_Nonnull x, const float *_Nonnull y, long n);
    /// y[i] = fma(a, x[i], y[i]).
    void (*_Nonnull axpy)(float a, const float *_Nonnull x, float *_Nonnull y, long n);
    /// x[i] = exp(x[i]), tanh, sigmoid, in place (the same formulas as DMLKernels documents).
    void (*_Nonnull exp)(float *_Nonnull x, long n);
    void (*_Nonnull tanh)(float *_Nonnull x, long n);
    void (*_Nonnull sigmoid)(float *_Nonnull x, long n);
    /// x = max(x, 0); dy = (y > 0 ? dy : 0); dy = dy·(1 − y·y); dy = (dy·y)·(1 − y); x = x·a; y = y + x.
    void (*_Nonnull relu)(float *_Nonnull x, long n);
    void (*_Nonnull relu_backward)(float *_Nonnull dy, const float *_Nonnull y, long n);
    void (*_Nonnull tanh_backward)(float *_Nonnull dy, const float *_Nonnull y, long n);
    void (*_Nonnull sigmoid_backward)(float *_Nonnull dy, const float *_Nonnull y, long n);
    void (*_Nonnull scale)(float a, float *_Nonnull x, long n);
    void (*_Nonnull add)(const float *_Nonnull x, float *_Nonnull y, long n);
    /// Σ x[i] with four eight-lane accumulators over blocks of 32, a fixed tree, then the tail in order.
    float (*_Nonnull sum)(const float *_Nonnull x, long n);
    /// 16-bit wire formats of the compressed allreduce: IEEE half (round to nearest even, overflow to ±inf,
    /// NaN stays NaN: F16C's conversion, or the compiler's exact software one) and bfloat16 (the upper 16 bits,
    /// rounded to nearest even, NaN as 0x7FC0); decoding is exact.
    void (*_Nonnull fp16_encode)(const float *_Nonnull src, uint16_t *_Nonnull dst, long n);
    void (*_Nonnull fp16_decode)(const uint16_t *_Nonnull src, float *_Nonnull dst, long n);
    void (*_Nonnull bf16_encode)(const float *_Nonnull src, uint16_t *_Nonnull dst, long n);
    void (*_Nonnull bf16_decode)(const uint16_t *_Nonnull src, float *_Nonnull dst, long n);
    /// Softmax of each of `rows` rows of `cols` values (row stride ld) in place; lse[r] = the row's
    /// log-sum-exp when lse is not NULL.
    void (*_Nonnull softmax_rows)(float *_Nonnull x, long rows, long cols, long ld, float *_Nullable lse);
    /// CSR rows (row r's non-zeros at positions row_starts[r] ..< row_starts[r + 1] of indices and values):
    /// acc[indices[k]·n + c] += (double)g[r·ldg + c]·(double)values[k] for every row in order, its non-zeros in
    /// order, c < n (the gradient Dᵀ·X of a large batch, summed by column in Double). A product of two floats is
    /// exact in double, so the bits do not depend on the ISA or on fusing.
    void (*_Nonnull csr_scatter)(long rows, const long *_Nonnull row_starts, const int32_t *_Nonnull indices,
                                 const float *_Nonnull values, const float *_Nonnull g, long ldg, long n, double *_Nonnull acc);
    /// out[r·ldo + c] = (float)(s0 + s1) for c < n, where s0 and s1 sum (double)values[k]·(double)wt[indices[k]·n + c]
    /// over row r's non-zeros at even and at odd positions, in order (X·Wᵀ with W transposed to wt, columns × n).
    /// `scratch`: 2n doubles.
    void (*_Nonnull csr_forward_t)(long rows, const long *_Nonnull row_starts, const int32_t *_Nonnull indices,
                                   const float *_Nonnull values, const float *_Nonnull wt, long n, float *_Nonnull out,
                                   long ldo, double *_Nonnull scratch);
    /// out[r] = (float)(((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))), where s_l sums
    /// (double)values[k]·(double)w[indices[k]] over row r's non-zeros at positions ≡ l (mod 8) from the row's
    /// start, in order: X·w for one output in eight independent chains (the full-batch passes' margins, whose
    /// long rows would wait on one chain's latency). Each chain's operations are the same on every ISA.
    void (*_Nonnull csr_margins)(long rows, const long *_Nonnull row_starts, const int32_t *_Nonnull indices,
                                 const float *_Nonnull values, const float *_Nonnull w, float *_Nonnull out);
    /// max over i of the bits of |x[i]| (sign cleared), 0 for n = 0: an integer max (≥ 0x7F800000: ±∞ or NaN).
    uint32_t (*_Nonnull max_abs_bits)(const float *_Nonnull x, long n);
    /// q[i] += trunc(x[i]·scale) for `scale` a power of two: exact, and the same integers on every ISA (AVX-512DQ
    /// vcvttpd2qq; elsewhere an exact two-part split), where |x[i]·scale| < 2^62 and the sums stay below 2^63;
    /// beyond, defined but meaningless integers (products clamped to ±2^62, sums wrapping), for the caller to
    /// discard. Returns max_abs_bits(x, n), found in the same pass, so that the caller knows. The exact fixed-point
    /// accumulation of `--reproducible`. One pass: n Floats read, n Int64 read and written.
    uint32_t (*_Nonnull fixed_add)(const float *_Nonnull x, long n, double scale, int64_t *_Nonnull q);
} dml_kernel_table;

/// The kernels in use: chosen at load time as the best ISA this CPU and OS support, unless the environment
/// variable DML_KERNELS_ISA names another (generic, avx2, avx512; one this CPU lacks is refused with a note on
/// stderr and the best is used). Never NULL. Read it once per top-level call and use it for that whole call.
const dml_kernel_table *_Nonnull dml_kernels(void);
/// Whether this CPU (and OS) can run `isa`'s kernels.
int dml_kernels_supported(dml_isa isa);
/// The table of `isa` whether or not it is active (NULL if unsupported here).
const dml_kernel_table *_Nullable dml_kernels_table(dml_isa isa);
/// Makes `isa` the active set (for tests and benchmarks; not while another thread runs kernels). Returns 0, or
/// -1 if unsupported here.
int dml_kernels_select(dml_isa isa);
/// Why DML_KERNELS_ISA was not followed (unknown name or unsupported ISA), or NULL.
const char *_Nullable dml_kernels_override_note(void);

// Entry points that dispatch through the active table (one indirect jump).
float dml_dot(const float *_Nonnull x, const float *_Nonnull y, long n);
void dml_axpy(float a, const float *_Nonnull x, float *_Nonnull y, long n);

/// Threads per process for the kernels (`dml_parallel`): the calling thread plus T − 1 persistent workers.
/// At most DML_MAX_THREADS.
#define DML_MAX_THREADS 256
/// One parallel call's work: units [begin, end) on one thread.
typedef void (*dml_range_fn)(void *_Nullable ctx, long begin, long end);
/// Sets the process's kernel threads to `threads` (1: no pool), replacing the pool; waits for a running call.
/// Returns 0, or -1 for a count outside 1...DML_MAX_THREADS or when a thread cannot be started (then unchanged).
int dml_threads_set(long threads);
/// The process's kernel threads (1 when no pool).
long dml_threads(void);
/// Runs fn over units 0 ..< units and returns when all are done: the threads, the caller among them, claim one
/// unit at a time (fn(ctx, u, u + 1)), so a thread the OS does not schedule leaves its units to the others. With
/// one thread, or when the pool is already running a call (another thread's, or a nested one), fn(ctx, 0, units)
/// runs on the caller. So fn must give the same results however the units are cut into runs. Overhead about a
/// microsecond while the workers spin (they sleep after a few hundred microseconds idle).
void dml_parallel(long units, dml_range_fn _Nonnull fn, void *_Nullable ctx);
/// CPUs in this process's affinity mask (what the launcher gave the rank), or the online CPUs.
long dml_affinity_cpus(void);

/// A software prefetch into all cache levels (Swift cannot spell `__builtin_prefetch`): for gathering rows
/// scattered in memory, where the hardware prefetcher follows each row once started but not the jump to the next.
static inline void dml_prefetch_read(const void *_Nonnull p) { __builtin_prefetch(p, 0, 3); }

#ifdef __cplusplus
}
#endif
#endif
