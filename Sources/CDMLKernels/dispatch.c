// Run-time choice of the kernels' ISA: once, before main (a constructor), from CPUID and the register state the
// OS saves (XGETBV), or from DML_KERNELS_ISA. See CDMLKernels.h.
#include "CDMLKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const dml_kernel_table dml_kernels_table_generic;
#if defined(__x86_64__)
#include <cpuid.h>
extern const dml_kernel_table dml_kernels_table_avx2;
extern const dml_kernel_table dml_kernels_table_avx512;
#endif

static const dml_kernel_table *tables[DML_ISA_COUNT] = {
    &dml_kernels_table_generic,
#if defined(__x86_64__)
    &dml_kernels_table_avx2,
    &dml_kernels_table_avx512,
#endif
};
static const dml_kernel_table *_Atomic active = &dml_kernels_table_generic;
static char note[160];
static int supported_mask = 1 << DML_ISA_GENERIC;

#if defined(__x86_64__)
/// Bits of XCR0: the register state the OS saves on a context switch (an ISA is usable only if it does).
static unsigned long long xcr0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static int detect(void) {
    int mask = 1 << DML_ISA_GENERIC;
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return mask;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return mask;
    const unsigned long long x = xcr0();
    if ((x & 0x6) != 0x6) return mask;  // SSE and AVX state
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return mask;
    const int avx2 = (b >> 5) & 1, f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
    if (avx2 && fma && f16c) mask |= 1 << DML_ISA_AVX2;
    if ((mask & (1 << DML_ISA_AVX2)) && f && dq && bw && vl && (x & 0xE0) == 0xE0)  // opmask, ZMM state
        mask |= 1 << DML_ISA_AVX512;
    return mask;
}
#else
static int detect(void) { return 1 << DML_ISA_GENERIC; }
#endif

__attribute__((constructor)) static void dml_kernels_init(void) {
    supported_mask = detect();
    dml_isa best = DML_ISA_GENERIC;
    for (int i = 0; i < DML_ISA_COUNT; i++)
        if (supported_mask & (1 << i)) best = (dml_isa)i;
    const char *want = getenv("DML_KERNELS_ISA");
    if (want && *want) {
        int found = -1;
        for (int i = 0; i < DML_ISA_COUNT; i++)
            if (strcmp(want, i == 0 ? "generic" : i == 1 ? "avx2" : "avx512") == 0) found = i;
        if (found < 0)
            snprintf(note, sizeof note, "DML_KERNELS_ISA=%s is not one of generic, avx2, avx512", want);
        else if (!(supported_mask & (1 << found)))
            snprintf(note, sizeof note, "DML_KERNELS_ISA=%s is not supported by this CPU", want);
        else
            best = (dml_isa)found;
        if (note[0]) fprintf(stderr, "dml: %s; using %s\n", note, tables[best]->name);
    }
    active = tables[best];
}

const dml_kernel_table *dml_kernels(void) { return active; }

int dml_kernels_supported(dml_isa isa) {
    return isa >= 0 && isa < DML_ISA_COUNT && (supported_mask & (1 << isa)) != 0;
}

const dml_kernel_table *dml_kernels_table(dml_isa isa) { return dml_kernels_supported(isa) ? tables[isa] : NULL; }

int dml_kernels_select(dml_isa isa) {
    if (!dml_kernels_supported(isa)) return -1;
    active = tables[isa];
    return 0;
}

const char *dml_kernels_override_note(void) { return note[0] ? note : NULL; }

float dml_dot(const float *x, const float *y, long n) { return active->dot(x, y, n); }
void dml_axpy(float a, const float *x, float *y, long n) { active->axpy(a, x, y, n); }
