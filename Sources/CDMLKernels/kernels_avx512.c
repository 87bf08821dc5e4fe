// The AVX-512 kernels (Skylake-SP, Ice Lake, Zen 4, Zen 5): 512-bit vectors where the bits allow (the gemm tile
// is 6 × 32, the few-class TN strip 32 columns wide, element-wise loops 16 wide), 32 registers.
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx,avx2,fma,f16c,avx512f,avx512vl,avx512dq,avx512bw"))), apply_to = function)
#define DML_ISA_SUFFIX avx512
#define DML_ISA_ENUM DML_ISA_AVX512
#define DML_ISA_NAME "avx512"
#define DML_VW 16
#include "kernels_impl.h"
#pragma clang attribute pop
#endif
