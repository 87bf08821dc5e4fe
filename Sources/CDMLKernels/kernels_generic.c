// The generic kernels: the C compiler's baseline ISA (SSE2 on x86-64, NEON on arm64), eight-lane vectors.
// Without hardware FMA each fused multiply-add is a call to fmaf: the same bits as the other ISAs, slowly.
#define DML_ISA_SUFFIX generic
#define DML_ISA_ENUM DML_ISA_GENERIC
#define DML_ISA_NAME "generic"
#define DML_VW 8
#include "kernels_impl.h"
