// The kernels' bodies, compiled once per ISA: a kernels_<isa>.c file defines DML_ISA_SUFFIX (the names' suffix)
// and DML_VW (the widest vector in floats: 8 or 16), applies that ISA's target attribute to every function,
// then includes this file. No function here may depend on the vector width for its bits (see CDMLKernels.h):
// kernels whose results depend on a lane layout (dot, gemv, the few-class NT kernel, softmax's sums) use
// eight-lane vectors on every ISA; the others form each output element by its own chain of operations.
#include "CDMLKernels.h"
#include <math.h>

// a*b+c is never fused behind our back: fusing would make the bits depend on the ISA.
#pragma clang fp contract(off)
// The helpers below that take or return vectors are static and always inlined, so no call ever passes a vector
// across an ABI boundary: the generic build's warning that 256-bit vectors change the ABI without AVX is moot.
#pragma clang diagnostic ignored "-Wpsabi"

#define DML_CAT2(a, b) a##_##b
#define DML_CAT(a, b) DML_CAT2(a, b)
#define FN(name) DML_CAT(name, DML_ISA_SUFFIX)

typedef float v8f __attribute__((ext_vector_type(8), aligned(4)));
typedef int v8i __attribute__((ext_vector_type(8), aligned(4)));
typedef float v16f __attribute__((ext_vector_type(16), aligned(4)));
typedef int v16i __attribute__((ext_vector_type(16), aligned(4)));
#if DML_VW == 16
typedef v16f VF;
typedef v16i VI;
#else
typedef v8f VF;
typedef v8i VI;
#endif
#define FMA __builtin_elementwise_fma

// Unaligned loads and stores (the vector types above are declared 4-byte aligned).
static inline __attribute__((always_inline)) v8f FN(ld8)(const float *p) { return *(const v8f *)p; }
static inline __attribute__((always_inline)) void FN(st8)(float *p, v8f v) { *(v8f *)p = v; }
static inline __attribute__((always_inline)) VF FN(ldv)(const float *p) { return *(const VF *)p; }
static inline __attribute__((always_inline)) void FN(stv)(float *p, VF v) { *(VF *)p = v; }
#define LD8 FN(ld8)
#define ST8 FN(st8)
#define LDV FN(ldv)
#define STV FN(stv)

/// The sum of eight lanes in a fixed tree: ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)).
static inline __attribute__((always_inline)) float FN(hsum8)(v8f v) {
    __typeof__(v.lo) q = v.lo + v.hi;
    __typeof__(q.lo) d = q.lo + q.hi;
    return d.x + d.y;
}

/// The write-back every kernel uses: s·alpha (beta 0: c not read), fma(s, alpha, c) (beta 1), fma(s, alpha, c·beta).
static inline __attribute__((always_inline)) float FN(wb1)(float s, float alpha, float beta, const float *c) {
    if (beta == 0) return s * alpha;
    if (beta == 1) return __builtin_fmaf(s, alpha, *c);
    return __builtin_fmaf(s, alpha, *c * beta);
}
static inline __attribute__((always_inline)) void FN(wbv)(float *c, VF s, float alpha, float beta) {
    if (beta == 0) STV(c, s * alpha);
    else if (beta == 1) STV(c, FMA(s, (VF)alpha, LDV(c)));
    else STV(c, FMA(s, (VF)alpha, LDV(c) * beta));
}
static inline __attribute__((always_inline)) void FN(wbv8)(float *c, v8f s, float alpha, float beta) {
    if (beta == 0) ST8(c, s * alpha);
    else if (beta == 1) ST8(c, FMA(s, (v8f)alpha, LD8(c)));
    else ST8(c, FMA(s, (v8f)alpha, LD8(c) * beta));
}
#define WB1 FN(wb1)
#define WBV FN(wbv)
// With 16-wide vectors, one eight-wide step before a scalar tail: rows a few classes wide (10 columns) would
// otherwise go one float at a time. Element-wise, so the bits are the same either way.
#if DML_VW == 16
#define DML_HALF_STEP 1
#else
#define DML_HALF_STEP 0
#endif
/// Lane-wise select: `mask` is a comparison of vectors.
#define DML_SEL(mask, a, b) ((mask) ? (a) : (b))

// MARK: gemm micro-tile: 6 rows × 2 vectors (6 × 16 with AVX2, 6 × 32 with AVX-512), 12 accumulators.

enum { MR = 6, NR = 2 * DML_VW };

/// The epilogue on `cols` values of row r of a tile (element-wise: the same bits as the separate passes).
static inline __attribute__((always_inline)) void FN(epilogue_row)(float *c, long r, long cols, const dml_epilogue *ep) {
    for (long j = 0; j < cols; j++) {
        float v = c[j];
        if (ep->bias) v = __builtin_fmaf(1.0f, ep->bias[j], v);
        if (ep->relu) v = v < 0 ? 0 : v;
        if (ep->mask) v = ep->mask[r * ep->ldm + j] <= 0 ? 0 : v;
        c[j] = v;
    }
}

static void FN(gemm_tile)(long kc, const float *a, const float *b, float *c, long ldc, long rows, long cols,
                          float alpha, float beta, const dml_epilogue *ep) {
    VF acc[MR][2];
    for (int r = 0; r < MR; r++) { acc[r][0] = 0; acc[r][1] = 0; }
    for (long p = 0; p < kc; p++) {
        VF b0 = LDV(b), b1 = LDV(b + DML_VW);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            VF av = a[r];
            acc[r][0] = FMA(av, b0, acc[r][0]);
            acc[r][1] = FMA(av, b1, acc[r][1]);
        }
        a += MR;
        b += NR;
    }
    if (rows == MR && cols == NR) {
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            WBV(c + r * ldc, acc[r][0], alpha, beta);
            WBV(c + r * ldc + DML_VW, acc[r][1], alpha, beta);
        }
        if (ep) {
            const VF zero = 0;
            VF bias0 = 0, bias1 = 0;
            if (ep->bias) { bias0 = LDV(ep->bias); bias1 = LDV(ep->bias + DML_VW); }
#pragma clang loop unroll(full)
            for (int r = 0; r < MR; r++) {
                VF v0 = LDV(c + r * ldc), v1 = LDV(c + r * ldc + DML_VW);
                if (ep->bias) { v0 = FMA((VF)1.0f, bias0, v0); v1 = FMA((VF)1.0f, bias1, v1); }
                if (ep->relu) { v0 = DML_SEL(v0 < 0, zero, v0); v1 = DML_SEL(v1 < 0, zero, v1); }
                if (ep->mask) {
                    const float *m = ep->mask + r * ep->ldm;
                    v0 = DML_SEL(LDV(m) <= 0, zero, v0);
                    v1 = DML_SEL(LDV(m + DML_VW) <= 0, zero, v1);
                }
                STV(c + r * ldc, v0);
                STV(c + r * ldc + DML_VW, v1);
            }
        }
        return;
    }
    float tile[MR * NR];
    for (int r = 0; r < MR; r++) {
        STV(tile + r * NR, acc[r][0]);
        STV(tile + r * NR + DML_VW, acc[r][1]);
    }
    for (long r = 0; r < rows; r++) {
        for (long j = 0; j < cols; j++) c[r * ldc + j] = WB1(tile[r * NR + j], alpha, beta, c + r * ldc + j);
        if (ep) FN(epilogue_row)(c + r * ldc, r, cols, ep);
    }
}

// MARK: the FMA peak's probe: 12 independent chains, as many accumulators as the gemm tile.

static float FN(fma_peak)(long iters) {
    VF acc[12];
    for (int i = 0; i < 12; i++) acc[i] = (VF)(1e-3f * (float)i);
    const VF x = (VF)0.999999f, y = (VF)1e-7f;
    for (long p = 0; p < iters; p++) {
#pragma clang loop unroll(full)
        for (int i = 0; i < 12; i++) acc[i] = FMA(acc[i], x, y);
    }
    VF s = acc[0];
    for (int i = 1; i < 12; i++) s += acc[i];
    return s[0];
}

// MARK: few-class kernels (a classifier's output layer)

#if DML_VW == 16
/// AVX-512: four rows of A against five rows of B, each 512-bit accumulator holding two rows' eight lanes
/// ([row i | row i+1]), so per 8 columns of k: four loads of A, five broadcasts of B, ten FMAs for 4 × 5 dot
/// products (the AVX2 kernel needs seven loads and ten FMAs for 2 × 5). Each lane accumulates the same terms
/// in the same order as the eight-lane kernel, and each half is summed with the same tree: the same bits.
static void FN(skinny_nt)(long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                          float beta, float *c, long ldc) {
    const long k8 = k & ~7L;
    for (long i = 0; i < m; i += 4) {
        const float *ar[4];  // rows past the last are the last row again: computed, not written
        for (int r = 0; r < 4; r++) ar[r] = a + (i + r < m ? i + r : m - 1) * lda;
        for (long g = 0; g < n; g += 5) {
            const long cls = n - g < 5 ? n - g : 5;
            const float *bs[5];
            for (int q = 0; q < 5; q++) bs[q] = b + (g + q < n ? g + q : n - 1) * ldb;
            v16f s01[5] = {0, 0, 0, 0, 0}, s23[5] = {0, 0, 0, 0, 0};
            for (long p = 0; p < k8; p += 8) {
                v16f x01 = __builtin_shufflevector(LD8(ar[0] + p), LD8(ar[1] + p), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                   10, 11, 12, 13, 14, 15);
                v16f x23 = __builtin_shufflevector(LD8(ar[2] + p), LD8(ar[3] + p), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                   10, 11, 12, 13, 14, 15);
#pragma clang loop unroll(full)
                for (int q = 0; q < 5; q++) {
                    v8f w8 = LD8(bs[q] + p);
                    v16f w = __builtin_shufflevector(w8, w8, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7);
                    s01[q] = FMA(x01, w, s01[q]);
                    s23[q] = FMA(x23, w, s23[q]);
                }
            }
            float r[4][5];
            for (int q = 0; q < 5; q++) {
                r[0][q] = FN(hsum8)(s01[q].lo);
                r[1][q] = FN(hsum8)(s01[q].hi);
                r[2][q] = FN(hsum8)(s23[q].lo);
                r[3][q] = FN(hsum8)(s23[q].hi);
            }
            for (long p = k8; p < k; p++)
                for (int q = 0; q < 5; q++)
                    for (int t = 0; t < 4; t++) r[t][q] = __builtin_fmaf(ar[t][p], bs[q][p], r[t][q]);
            for (long t = 0; t < 4 && i + t < m; t++) {
                float *ct = c + (i + t) * ldc + g;
                for (long q = 0; q < cls; q++) ct[q] = WB1(r[t][q], alpha, beta, ct + q);
            }
        }
    }
}
#else
static void FN(skinny_nt)(long m, long n, long k, float alpha, const float *a, long lda, const float *b, long ldb,
                          float beta, float *c, long ldc) {
    const long k8 = k & ~7L;
    for (long i = 0; i < m; i += 2) {
        const float *a0 = a + i * lda;
        const float *a1 = i + 1 < m ? a0 + lda : a0;  // odd last row: computed twice, written once
        for (long g = 0; g < n; g += 5) {
            // A group past the last class repeats the last row of B; its results are not written.
            const long cls = n - g < 5 ? n - g : 5;
            const float *bs[5];
            for (int q = 0; q < 5; q++) bs[q] = b + (g + q < n ? g + q : n - 1) * ldb;
            v8f s0[5] = {0, 0, 0, 0, 0}, s1[5] = {0, 0, 0, 0, 0};
            for (long p = 0; p < k8; p += 8) {
                v8f x0 = LD8(a0 + p), x1 = LD8(a1 + p);
#pragma clang loop unroll(full)
                for (int q = 0; q < 5; q++) {
                    v8f w = LD8(bs[q] + p);
                    s0[q] = FMA(x0, w, s0[q]);
                    s1[q] = FMA(x1, w, s1[q]);
                }
            }
            float r0[5], r1[5];
            for (int q = 0; q < 5; q++) { r0[q] = FN(hsum8)(s0[q]); r1[q] = FN(hsum8)(s1[q]); }
            for (long p = k8; p < k; p++)
                for (int q = 0; q < 5; q++) {
                    r0[q] = __builtin_fmaf(a0[p], bs[q][p], r0[q]);
                    r1[q] = __builtin_fmaf(a1[p], bs[q][p], r1[q]);
                }
            float *c0 = c + i * ldc + g;
            for (long q = 0; q < cls; q++) c0[q] = WB1(r0[q], alpha, beta, c0 + q);
            if (i + 1 < m) {
                float *c1 = c0 + ldc;
                for (long q = 0; q < cls; q++) c1[q] = WB1(r1[q], alpha, beta, c1 + q);
            }
        }
    }
}
#endif

static void FN(skinny_tn_block)(long m, long cols, long rows, const float *a, long lda, const float *b, long ldb,
                                float alpha, float beta, float *out, long ldo) {
    for (long g = 0; g < m; g += 5) {
        const long count = m - g < 5 ? m - g : 5;
        long ai[5];  // columns of A past the last class repeat the last one; their results are not written
        for (int q = 0; q < 5; q++) ai[q] = g + q < m ? g + q : m - 1;
        long j = 0;
        for (; j + 2 * DML_VW <= cols; j += 2 * DML_VW) {
            VF s[5][2];
            for (int q = 0; q < 5; q++) { s[q][0] = 0; s[q][1] = 0; }
            const float *pa = a, *pb = b + j;
#pragma clang loop unroll_count(2)
            for (long p = 0; p < rows; p++) {
                VF x0 = LDV(pb), x1 = LDV(pb + DML_VW);
#pragma clang loop unroll(full)
                for (int q = 0; q < 5; q++) {
                    VF d = pa[ai[q]];
                    s[q][0] = FMA(d, x0, s[q][0]);
                    s[q][1] = FMA(d, x1, s[q][1]);
                }
                pa += lda;
                pb += ldb;
            }
            for (long q = 0; q < count; q++) {
                WBV(out + (g + q) * ldo + j, s[q][0], alpha, beta);
                WBV(out + (g + q) * ldo + j + DML_VW, s[q][1], alpha, beta);
            }
        }
        for (; j + DML_VW <= cols; j += DML_VW) {
            VF s[5] = {0, 0, 0, 0, 0};
            const float *pa = a, *pb = b + j;
            for (long p = 0; p < rows; p++) {
                VF x0 = LDV(pb);
#pragma clang loop unroll(full)
                for (int q = 0; q < 5; q++) s[q] = FMA((VF)pa[ai[q]], x0, s[q]);
                pa += lda;
                pb += ldb;
            }
            for (long q = 0; q < count; q++) WBV(out + (g + q) * ldo + j, s[q], alpha, beta);
        }
        for (; j < cols; j++) {
            for (long q = 0; q < count; q++) {
                float s = 0;
                const float *pa = a + g + q, *pb = b + j;
                for (long p = 0; p < rows; p++) {
                    s = __builtin_fmaf(*pa, *pb, s);
                    pa += lda;
                    pb += ldb;
                }
                float *o = out + (g + q) * ldo + j;
                *o = WB1(s, alpha, beta, o);
            }
        }
    }
}

// MARK: level 1 and 2

static void FN(write_back)(long n, const float *s, float alpha, float beta, float *c) {
    long j = 0;
    for (; j + DML_VW <= n; j += DML_VW) WBV(c + j, LDV(s + j), alpha, beta);
    if (DML_HALF_STEP && j + 8 <= n) {
        FN(wbv8)(c + j, LD8(s + j), alpha, beta);
        j += 8;
    }
    for (; j < n; j++) c[j] = WB1(s[j], alpha, beta, c + j);
}

static float FN(dot)(const float *x, const float *y, long n) {
    v8f a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = FMA(LD8(x + i), LD8(y + i), a0);
        a1 = FMA(LD8(x + i + 8), LD8(y + i + 8), a1);
        a2 = FMA(LD8(x + i + 16), LD8(y + i + 16), a2);
        a3 = FMA(LD8(x + i + 24), LD8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = FMA(LD8(x + i), LD8(y + i), a0);
    float s = FN(hsum8)((a0 + a1) + (a2 + a3));
    for (; i < n; i++) s = __builtin_fmaf(x[i], y[i], s);
    return s;
}

static void FN(axpy)(float a, const float *x, float *y, long n) {
    const VF av = a;
    long i = 0;
    for (; i + 2 * DML_VW <= n; i += 2 * DML_VW) {
        VF y0 = FMA(av, LDV(x + i), LDV(y + i)), y1 = FMA(av, LDV(x + i + DML_VW), LDV(y + i + DML_VW));
        STV(y + i, y0);
        STV(y + i + DML_VW, y1);
    }
    for (; i + DML_VW <= n; i += DML_VW) STV(y + i, FMA(av, LDV(x + i), LDV(y + i)));
    if (DML_HALF_STEP && i + 8 <= n) {
        ST8(y + i, FMA((v8f)a, LD8(x + i), LD8(y + i)));
        i += 8;
    }
    for (; i < n; i++) y[i] = __builtin_fmaf(a, x[i], y[i]);
}

static void FN(gemv)(long m, long n, float alpha, const float *a, long lda, const float *x, float beta, float *y) {
    long i = 0;
    for (; i + 4 <= m; i += 4) {
        // Two accumulators per row (even and odd blocks of 8 columns): eight independent FMA chains, so the loop
        // is bound by loads, not by the FMA latency (four chains ran at half the speed of A in L2).
        const float *r0 = a + i * lda, *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda;
        v8f s0 = 0, s1 = 0, s2 = 0, s3 = 0, u0 = 0, u1 = 0, u2 = 0, u3 = 0;
        long j = 0;
        for (; j + 16 <= n; j += 16) {
            v8f xv = LD8(x + j), xw = LD8(x + j + 8);
            s0 = FMA(LD8(r0 + j), xv, s0);
            s1 = FMA(LD8(r1 + j), xv, s1);
            s2 = FMA(LD8(r2 + j), xv, s2);
            s3 = FMA(LD8(r3 + j), xv, s3);
            u0 = FMA(LD8(r0 + j + 8), xw, u0);
            u1 = FMA(LD8(r1 + j + 8), xw, u1);
            u2 = FMA(LD8(r2 + j + 8), xw, u2);
            u3 = FMA(LD8(r3 + j + 8), xw, u3);
        }
        if (j + 8 <= n) {
            v8f xv = LD8(x + j);
            s0 = FMA(LD8(r0 + j), xv, s0);
            s1 = FMA(LD8(r1 + j), xv, s1);
            s2 = FMA(LD8(r2 + j), xv, s2);
            s3 = FMA(LD8(r3 + j), xv, s3);
            j += 8;
        }
        float t0 = FN(hsum8)(s0 + u0), t1 = FN(hsum8)(s1 + u1), t2 = FN(hsum8)(s2 + u2), t3 = FN(hsum8)(s3 + u3);
        for (; j < n; j++) {
            t0 = __builtin_fmaf(r0[j], x[j], t0);
            t1 = __builtin_fmaf(r1[j], x[j], t1);
            t2 = __builtin_fmaf(r2[j], x[j], t2);
            t3 = __builtin_fmaf(r3[j], x[j], t3);
        }
        y[i] = WB1(t0, alpha, beta, y + i);
        y[i + 1] = WB1(t1, alpha, beta, y + i + 1);
        y[i + 2] = WB1(t2, alpha, beta, y + i + 2);
        y[i + 3] = WB1(t3, alpha, beta, y + i + 3);
    }
    for (; i < m; i++) y[i] = WB1(FN(dot)(a + i * lda, x, n), alpha, beta, y + i);
}

static void FN(add_rows)(long rows, long n, const float *a, long lda, const float *x, float *t) {
    long i = 0;
    for (; i + 4 <= rows; i += 4) {
        const float *r0 = a + i * lda, *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda;
        long j = 0;
        if (x) {
            const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
            const VF v0 = x0, v1 = x1, v2 = x2, v3 = x3;
            for (; j + DML_VW <= n; j += DML_VW) {
                VF tv = LDV(t + j);
                tv = FMA(v0, LDV(r0 + j), tv);
                tv = FMA(v1, LDV(r1 + j), tv);
                tv = FMA(v2, LDV(r2 + j), tv);
                tv = FMA(v3, LDV(r3 + j), tv);
                STV(t + j, tv);
            }
            if (DML_HALF_STEP && j + 8 <= n) {
                v8f tv = LD8(t + j);
                tv = FMA((v8f)x0, LD8(r0 + j), tv);
                tv = FMA((v8f)x1, LD8(r1 + j), tv);
                tv = FMA((v8f)x2, LD8(r2 + j), tv);
                tv = FMA((v8f)x3, LD8(r3 + j), tv);
                ST8(t + j, tv);
                j += 8;
            }
            for (; j < n; j++)
                t[j] = __builtin_fmaf(x3, r3[j], __builtin_fmaf(x2, r2[j], __builtin_fmaf(x1, r1[j], __builtin_fmaf(x0, r0[j], t[j]))));
        } else {
            for (; j + DML_VW <= n; j += DML_VW)
                STV(t + j, (((LDV(t + j) + LDV(r0 + j)) + LDV(r1 + j)) + LDV(r2 + j)) + LDV(r3 + j));
            if (DML_HALF_STEP && j + 8 <= n) {
                ST8(t + j, (((LD8(t + j) + LD8(r0 + j)) + LD8(r1 + j)) + LD8(r2 + j)) + LD8(r3 + j));
                j += 8;
            }
            for (; j < n; j++) t[j] = (((t[j] + r0[j]) + r1[j]) + r2[j]) + r3[j];
        }
    }
    for (; i < rows; i++) {
        const float *r = a + i * lda;
        if (x) FN(axpy)(x[i], r, t, n);
        else {
            long j = 0;
            for (; j + DML_VW <= n; j += DML_VW) STV(t + j, LDV(t + j) + LDV(r + j));
            if (DML_HALF_STEP && j + 8 <= n) {
                ST8(t + j, LD8(t + j) + LD8(r + j));
                j += 8;
            }
            for (; j < n; j++) t[j] = t[j] + r[j];
        }
    }
}

// MARK: element-wise, memory-bound (one or two operations per element)

static void FN(relu)(float *x, long n) {
    long i = 0;
    for (; i + DML_VW <= n; i += DML_VW) {
        VF v = LDV(x + i);
        STV(x + i, DML_SEL(v < 0, (VF)0, v));
    }
    for (; i < n; i++) x[i] = x[i] < 0 ? 0 : x[i];
}

static void FN(relu_backward)(float *dy, const float *y, long n) {
    long i = 0;
    for (; i + DML_VW <= n; i += DML_VW) STV(dy + i, DML_SEL(LDV(y + i) <= 0, (VF)0, LDV(dy + i)));
    for (; i < n; i++) dy[i] = y[i] <= 0 ? 0 : dy[i];
}

static void FN(tanh_backward)(float *dy, const float *y, long n) {
    long i = 0;
    for (; i + DML_VW <= n; i += DML_VW) {
        VF t = LDV(y + i);
        STV(dy + i, LDV(dy + i) * (1.0f - t * t));
    }
    for (; i < n; i++) dy[i] = dy[i] * (1.0f - y[i] * y[i]);
}

static void FN(sigmoid_backward)(float *dy, const float *y, long n) {
    long i = 0;
    for (; i + DML_VW <= n; i += DML_VW) {
        VF t = LDV(y + i);
        STV(dy + i, LDV(dy + i) * t * (1.0f - t));
    }
    for (; i < n; i++) dy[i] = dy[i] * y[i] * (1.0f - y[i]);
}

static void FN(scale)(float a, float *x, long n) {
    long i = 0;
    for (; i + DML_VW <= n; i += DML_VW) STV(x + i, LDV(x + i) * a);
    for (; i < n; i++) x[i] = x[i] * a;
}

static void FN(add)(const float *x, float *y, long n) {
    long i = 0;
    for (; i + DML_VW <= n; i += DML_VW) STV(y + i, LDV(y + i) + LDV(x + i));
    for (; i < n; i++) y[i] = y[i] + x[i];
}

static float FN(sum)(const float *x, long n) {
    v8f a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = a0 + LD8(x + i);
        a1 = a1 + LD8(x + i + 8);
        a2 = a2 + LD8(x + i + 16);
        a3 = a3 + LD8(x + i + 24);
    }
    for (; i + 8 <= n; i += 8) a0 = a0 + LD8(x + i);
    float s = FN(hsum8)((a0 + a1) + (a2 + a3));
    for (; i < n; i++) s = s + x[i];
    return s;
}

// MARK: exact fixed point (`--reproducible`'s sum)

/// max over i of the bits of |x[i]| (the sign cleared): an integer max, so the same on every ISA; for finite
/// values the order of the bit patterns is the order of the magnitudes, and ≥ 0x7F800000 means ±∞ or NaN.
static uint32_t FN(max_abs_bits)(const float *x, long n) {
    const uint32_t *b = (const uint32_t *)x;
    uint32_t top = 0;
    for (long i = 0; i < n; i++) {
        uint32_t v = b[i] & 0x7FFFFFFFu;
        top = v > top ? v : top;
    }
    return top;
}

typedef double v4d __attribute__((ext_vector_type(4), aligned(8)));
typedef long long v4q __attribute__((ext_vector_type(4), aligned(8)));
typedef double v8dq __attribute__((ext_vector_type(8), aligned(8)));
typedef long long v8q __attribute__((ext_vector_type(8), aligned(8)));

#if DML_VW != 16
/// trunc(v) as Int64 for integer-or-not doubles with |v| < 2^62, without a 64-bit conversion instruction (AVX2 and
/// SSE2 have none): t = trunc(v); hi = floor(t·2^−32) (|hi| ≤ 2^30) and lo = t − hi·2^32 (0 ≤ lo < 2^32), both
/// exact; each becomes an integer through the magic-number trick (adding 1.5·2^52 or 2^52 puts the integer in the
/// low mantissa bits, exactly, as it is an integer below 2^51), and the result is hi·2^32 + lo in integer
/// arithmetic: the same integer as a truncating conversion (C's cast, AVX-512DQ's vcvttpd2qq).
static inline __attribute__((always_inline)) v4q FN(trunc_q4)(v4d v) {
    const v4d t = __builtin_elementwise_trunc(v);
    const v4d hi = __builtin_elementwise_floor(t * 0x1p-32);
    const v4d lo = t - hi * 0x1p32;
    const v4d mh = 0x1.8p52, ml = 0x1p52;
    const v4q h = (v4q)(hi + mh) - (v4q)mh, l = (v4q)(lo + ml) - (v4q)ml;
    return (h << 32) + l;
}
#endif

typedef unsigned long long v4uq __attribute__((ext_vector_type(4), aligned(8)));
typedef unsigned long long v8uq __attribute__((ext_vector_type(8), aligned(8)));

/// q[i] += trunc(x[i]·scale) (`scale` a power of two, so the product is exact in Double), the same integers on
/// every ISA (AVX-512DQ: vcvttpd2qq; AVX2 and generic: the exact split above; the tail: C's truncating cast).
/// Exact where |x[i]·scale| < 2^62 and the sums stay below 2^63; beyond (a scale too large for x, or ±∞, NaN) the
/// product is first clamped to ±2^62 and the sums wrap: defined but meaningless integers, which the caller
/// discards, knowing it from the returned max. Returns max_abs_bits(x, n), found in the same pass.
static uint32_t FN(fixed_add)(const float *x, long n, double scale, int64_t *q) {
    long i = 0;
    uint32_t top = 0;
#if DML_VW == 16
    v16i tops = 0;
    for (; i + 16 <= n; i += 16) {
        const v16f xv = LDV(x + i);
        const v16i bits = (v16i)xv & 0x7FFFFFFF;
        tops = __builtin_elementwise_max(tops, bits);
#pragma clang loop unroll(full)
        for (int h = 0; h < 2; h++) {
            const v8f x8 = h == 0 ? xv.lo : xv.hi;
            v8dq v = __builtin_convertvector(x8, v8dq) * scale;
            v = __builtin_elementwise_max(__builtin_elementwise_min(v, (v8dq)0x1p62), (v8dq)-0x1p62);
            v8uq *d = (v8uq *)(q + i + 8 * h);
            *d = *d + (v8uq)__builtin_convertvector(v, v8q);
        }
    }
    top = (uint32_t)__builtin_reduce_max(tops);
#else
    v8i tops = 0;
    for (; i + 8 <= n; i += 8) {
        const v8f xv = LD8(x + i);
        tops = __builtin_elementwise_max(tops, (v8i)xv & 0x7FFFFFFF);
#pragma clang loop unroll(full)
        for (int h = 0; h < 2; h++) {
            const __typeof__(xv.lo) x4 = h == 0 ? xv.lo : xv.hi;
            v4d v = __builtin_convertvector(x4, v4d) * scale;
            v = __builtin_elementwise_max(__builtin_elementwise_min(v, (v4d)0x1p62), (v4d)-0x1p62);
            v4uq *d = (v4uq *)(q + i + 4 * h);
            *d = *d + (v4uq)FN(trunc_q4)(v);
        }
    }
    top = (uint32_t)__builtin_reduce_max(tops);
#endif
    for (; i < n; i++) {
        uint32_t b;
        __builtin_memcpy(&b, x + i, 4);
        b &= 0x7FFFFFFFu;
        top = b > top ? b : top;
        double v = (double)x[i] * scale;
        v = v < 0x1p62 ? v : 0x1p62;   // NaN: 2^62
        v = v > -0x1p62 ? v : -0x1p62;
        q[i] = (int64_t)((uint64_t)q[i] + (uint64_t)(int64_t)v);
    }
    return top;
}

// MARK: 16-bit wire formats (plain loops: the compiler vectorises them, with F16C where the ISA has it)

static void FN(fp16_encode)(const float *src, uint16_t *dst, long n) {
    for (long i = 0; i < n; i++) {
        _Float16 h = (_Float16)src[i];
        __builtin_memcpy(dst + i, &h, 2);
    }
}

static void FN(fp16_decode)(const uint16_t *src, float *dst, long n) {
    for (long i = 0; i < n; i++) {
        _Float16 h;
        __builtin_memcpy(&h, src + i, 2);
        dst[i] = (float)h;
    }
}

static void FN(bf16_encode)(const float *src, uint16_t *dst, long n) {
    for (long i = 0; i < n; i++) {
        uint32_t b;
        __builtin_memcpy(&b, src + i, 4);
        const uint16_t rounded = (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
        dst[i] = src[i] != src[i] ? 0x7FC0 : rounded;
    }
}

static void FN(bf16_decode)(const uint16_t *src, float *dst, long n) {
    for (long i = 0; i < n; i++) {
        const uint32_t b = (uint32_t)src[i] << 16;
        __builtin_memcpy(dst + i, &b, 4);
    }
}

// MARK: exp, tanh, sigmoid, softmax
//
// exp: Cody–Waite range reduction x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r (Cephes' expf
// coefficients) and 2^n built in the exponent bits. Relative error ≲ 2e-7; x < −87.3 gives 0, x > 88.7 gives
// +inf, NaN stays NaN. Unfused multiplies and adds throughout (the same bits on every ISA).

#define DML_DEFINE_EXP(name, VT, IT)                                                                  \
    static inline __attribute__((always_inline)) VT name(VT x0) {                                    \
        const VT hi = 88.72283f, lo = -87.33654f;                                                     \
        VT x = DML_SEL(x0 > hi, hi, x0);                                                              \
        x = DML_SEL(x < lo, lo, x);                                                                   \
        const VT magic = 12582912.0f; /* 1.5·2^23: round(x·log2 e) lands in the low mantissa bits */ \
        VT t = x * 1.44269504f + magic;                                                               \
        VT n = t - magic;                                                                             \
        VT r = x - n * 0.693359375f;                                                                  \
        r = r - n * -2.12194440e-4f;                                                                  \
        VT p = 1.98756915e-4f;                                                                        \
        p = p * r + 1.39819995e-3f;                                                                   \
        p = p * r + 8.3334519e-3f;                                                                    \
        p = p * r + 4.16657959e-2f;                                                                   \
        p = p * r + 1.66666655e-1f;                                                                   \
        p = p * r + 5.0000001e-1f;                                                                    \
        VT e = p * (r * r) + r + 1.0f;                                                                \
        IT bits = (((IT)t - (IT)magic) + 127) << 23;                                                  \
        VT result = e * (VT)bits;                                                                     \
        result = DML_SEL(x0 < lo, (VT)0, result);                                                     \
        result = DML_SEL(x0 > hi, (VT)__builtin_inff(), result);                                      \
        return DML_SEL(x0 != x0, x0, result);                                                         \
    }
DML_DEFINE_EXP(FN(expv), VF, VI)
DML_DEFINE_EXP(FN(expv8), v8f, v8i)

/// tanh as sign(x)·(1 − 2/(e^{2|x|} + 1)); for |x| < 0.0625 the odd series x − x³/3 + 2x⁵/15.
static inline __attribute__((always_inline)) VF FN(tanhv)(VF v) {
    VF a = DML_SEL(v < 0, -v, v);
    VF e = FN(expv)(a + a);
    VF t = 1.0f - 2.0f / (e + 1.0f);
    VF a2 = a * a;
    VF series = a * (1.0f + a2 * (-1.0f / 3 + a2 * (2.0f / 15)));
    t = DML_SEL(a < 0.0625f, series, t);
    return DML_SEL(v < 0, -t, t);
}

/// 1/(1 + e^{−x}), as e^{x}/(1 + e^{x}) for x < 0 so nothing overflows.
static inline __attribute__((always_inline)) VF FN(sigmoidv)(VF v) {
    VI neg = v < 0;
    VF e = FN(expv)(DML_SEL(neg, v, -v));  // e^{−|v|} ∈ (0, 1]
    return DML_SEL(neg, e / (1.0f + e), 1.0f / (1.0f + e));
}

// Element-wise loops: the tail goes through a padded vector, so every element sees the same arithmetic.
#define DML_ELEMENTWISE(name, f)                                                                      \
    static void FN(name)(float *x, long n) {                                                          \
        long i = 0;                                                                                   \
        for (; i + DML_VW <= n; i += DML_VW) STV(x + i, f(LDV(x + i)));                             \
        if (i < n) {                                                                                  \
            VF v = 0;                                                                                 \
            for (long l = 0; l < n - i; l++) v[l] = x[i + l];                                         \
            v = f(v);                                                                                 \
            for (long l = 0; l < n - i; l++) x[i + l] = v[l];                                         \
        }                                                                                             \
    }
DML_ELEMENTWISE(exp, FN(expv))
DML_ELEMENTWISE(tanh, FN(tanhv))
DML_ELEMENTWISE(sigmoid, FN(sigmoidv))

/// One row: x = exp(x − max) in eight-lane blocks (the tail padded with −inf, whose exp is 0) summed lane-wise,
/// the lanes summed in the fixed tree, then x *= 1/sum; returns max + log(sum). Eight lanes on every ISA: a
/// classifier's row is a few classes wide.
static float FN(softmax_row)(float *x, long n) {
    float m = -__builtin_inff();
    for (long i = 0; i < n; i++)
        if (x[i] > m) m = x[i];
    v8f acc = 0;
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        v8f e = FN(expv8)(LD8(x + i) - m);
        ST8(x + i, e);
        acc = acc + e;
    }
    if (i < n) {
        v8f v = -__builtin_inff();
        for (long l = 0; l < n - i; l++) v[l] = x[i + l];
        v8f e = FN(expv8)(v - m);
        for (long l = 0; l < n - i; l++) x[i + l] = e[l];
        acc = acc + e;
    }
    const float s = FN(hsum8)(acc);
    const float inv = 1 / s;
    for (long j = 0; j < n; j++) x[j] = x[j] * inv;
    return m + logf(s);
}

static void FN(softmax_rows)(float *x, long rows, long cols, long ld, float *lse) {
    for (long r = 0; r < rows; r++) {
        const float l = FN(softmax_row)(x + r * ld, cols);
        if (lse) lse[r] = l;
    }
}

// MARK: CSR rows

typedef double v8d __attribute__((ext_vector_type(8), aligned(8)));

/// a[c] += (double)x[c]·v for c < n: eight doubles at a time (each element its own operations: no lane layout
/// enters the bits), then the tail.
static inline __attribute__((always_inline)) void FN(acc_f2d)(double *a, const float *x, double v, long n) {
    long c = 0;
    for (; c + 8 <= n; c += 8) {
        v8d xs = __builtin_convertvector(LD8(x + c), v8d);
        *(v8d *)(a + c) = *(const v8d *)(a + c) + xs * v;
    }
    for (; c < n; c++) a[c] += (double)x[c] * v;
}

static void FN(csr_scatter)(long rows, const long *row_starts, const int32_t *indices, const float *values,
                            const float *g, long ldg, long n, double *acc) {
    for (long r = 0; r < rows; r++) {
        const float *gr = g + r * ldg;
        if (n == 1) {
            double gv = (double)gr[0];
            for (long k = row_starts[r]; k < row_starts[r + 1]; k++) acc[indices[k]] += gv * (double)values[k];
        } else {
            for (long k = row_starts[r]; k < row_starts[r + 1]; k++) FN(acc_f2d)(acc + (long)indices[k] * n, gr, (double)values[k], n);
        }
    }
}

static void FN(csr_forward_t)(long rows, const long *row_starts, const int32_t *indices, const float *values,
                              const float *wt, long n, float *out, long ldo, double *scratch) {
    double *s0 = scratch, *s1 = scratch + n;
    for (long r = 0; r < rows; r++) {
        long lo = row_starts[r], hi = row_starts[r + 1];
        for (long c = 0; c < 2 * n; c++) scratch[c] = 0;
        for (long k = lo; k < hi; k++) FN(acc_f2d)(((k - lo) & 1) == 0 ? s0 : s1, wt + (long)indices[k] * n, (double)values[k], n);
        for (long c = 0; c < n; c++) out[r * ldo + c] = (float)(s0[c] + s1[c]);
    }
}

static void FN(csr_margins)(long rows, const long *row_starts, const int32_t *indices, const float *values,
                            const float *w, float *out) {
    for (long r = 0; r < rows; r++) {
        long k = row_starts[r], hi = row_starts[r + 1];
        v8d s = 0;  // lane l: the chain of positions ≡ l (mod 8)
        for (; k + 8 <= hi; k += 8) {
            const int32_t *ix = indices + k;
            v8f wv = {w[ix[0]], w[ix[1]], w[ix[2]], w[ix[3]], w[ix[4]], w[ix[5]], w[ix[6]], w[ix[7]]};
            s = s + __builtin_convertvector(LD8(values + k), v8d) * __builtin_convertvector(wv, v8d);
        }
        double t[8] = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]};
        for (int l = 0; k < hi; k++, l++) t[l] += (double)values[k] * (double)w[indices[k]];
        out[r] = (float)(((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7])));
    }
}

const dml_kernel_table FN(dml_kernels_table) = {
    .isa = DML_ISA_ENUM,
    .name = DML_ISA_NAME,
    .gemm_mr = MR,
    .gemm_nr = NR,
    .gemm_tile = FN(gemm_tile),
    .fma_peak = FN(fma_peak),
    .fma_flops_per_iter = 24 * DML_VW,
    .skinny_nt = FN(skinny_nt),
    .skinny_tn_block = FN(skinny_tn_block),
    .gemv = FN(gemv),
    .add_rows = FN(add_rows),
    .write_back = FN(write_back),
    .dot = FN(dot),
    .axpy = FN(axpy),
    .exp = FN(exp),
    .tanh = FN(tanh),
    .sigmoid = FN(sigmoid),
    .relu = FN(relu),
    .relu_backward = FN(relu_backward),
    .tanh_backward = FN(tanh_backward),
    .sigmoid_backward = FN(sigmoid_backward),
    .scale = FN(scale),
    .add = FN(add),
    .sum = FN(sum),
    .fp16_encode = FN(fp16_encode),
    .fp16_decode = FN(fp16_decode),
    .bf16_encode = FN(bf16_encode),
    .bf16_decode = FN(bf16_decode),
    .softmax_rows = FN(softmax_rows),
    .csr_scatter = FN(csr_scatter),
    .csr_forward_t = FN(csr_forward_t),
    .csr_margins = FN(csr_margins),
    .max_abs_bits = FN(max_abs_bits),
    .fixed_add = FN(fixed_add),
};
