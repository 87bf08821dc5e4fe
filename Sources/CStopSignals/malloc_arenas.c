#define _GNU_SOURCE
#include "MallocArenas.h"
#include <errno.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void dml_single_malloc_arena(void) {
#if defined(__GLIBC__)
    mallopt(M_ARENA_MAX, 1);
#endif
}

// glibc fixes the arena limit when a second thread first allocates, which in dml-train and dml-predict happens
// before main (measured: two 64 MB arenas reserved by the time RankProcess.run starts), so the limit is set
// here, before any thread of theirs exists. Other programs linking the library keep glibc's default.
__attribute__((constructor)) static void single_arena_in_dml_programs(void) {
    if (strcmp(program_invocation_short_name, "dml-train") == 0 || strcmp(program_invocation_short_name, "dml-predict") == 0) {
        dml_single_malloc_arena();
    }
}
