// The AVX2 + FMA (+ F16C) kernels (x86-64 since Haswell, 2013; every Zen): 256-bit vectors, 16 registers.
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,f16c"))), apply_to = function)
#define DML_ISA_SUFFIX avx2
#define DML_ISA_ENUM DML_ISA_AVX2
#define DML_ISA_NAME "avx2"
#define DML_VW 8
#include "kernels_impl.h"
#pragma clang attribute pop
#endif
