#ifndef DML_CKERNELHINTS_H
#define DML_CKERNELHINTS_H
// Compiler hints Swift cannot spell: a software prefetch, for gathering rows scattered in memory
// (the hardware prefetcher follows each row once started, but not the jump to the next row).
static inline void dml_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 3); }
#endif
