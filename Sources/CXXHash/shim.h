#ifndef DML_CXXHASH_SHIM_H
#define DML_CXXHASH_SHIM_H
// xxHash (Debian's libxxhash-dev): DML's one digest, XXH3-64, for checkpoint files, replica checks,
// configuration agreement and data identity. See Sources/DMLComm/Checksum.swift for why this one.
#define XXH_DISPATCH_DISABLE_REPLACE 1
#include <xxhash.h>
#if defined(__x86_64__)
// The library's run-time dispatch (XXH3_64bits_withSeed_dispatch) picks the widest vector unit the CPU
// has (SSE2, AVX2 or AVX-512); every path gives the same value.
#include <xxh_x86dispatch.h>
#endif
#endif
