#ifndef DML_MALLOC_ARENAS_H
#define DML_MALLOC_ARENAS_H
/// Makes every thread allocate from glibc's main malloc arena (`mallopt(M_ARENA_MAX, 1)`): each further arena
/// reserves 64 MB of address space, which a `ulimit -v` counts. Call before threads start. See RankProcess.swift.
void dml_single_malloc_arena(void);
#endif
