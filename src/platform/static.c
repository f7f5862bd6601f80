/* static.c - the freestanding platform: caller-given, already mapped memory.
 *
 * For hypervisors, kernels, firmware and test frameworks: no OS, no threads
 * (locks do nothing), memory handed over as ranges. Compiles with
 * -ffreestanding and no libc. */
#include "internal.h"

static int static_open(const struct kmm_platform *pf, const struct kmm_config *cfg, struct kmm_memory *mem, void **ctx)
{
    (void)cfg;
    *mem = *(const struct kmm_memory *)pf->arg;
    *ctx = (void *)pf;
    return 0;
}

/* The caller may reuse its memory: under ASan, nothing of it stays poisoned. */
static void static_close(void *ctx)
{
#if KMM_ASAN
    const struct kmm_memory *mem = ((const struct kmm_platform *)ctx)->arg;
    for (unsigned r = 0; r < mem->nr_ranges; r++)
        __asan_unpoison_memory_region((void *)(mem->direct_map + (uintptr_t)mem->ranges[r].start),
                                      (size_t)(mem->ranges[r].end - mem->ranges[r].start));
#else
    (void)ctx;
#endif
}
static void static_lock_nop(struct kmm_lock *l) { (void)l; }

/* One thread, or callers that serialise: their own synchronisation orders
 * one call's accesses before the next's. */
static int static_barrier_all(void *ctx)
{
    (void)ctx;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    return 0;
}

static void static_fatal_trap(void *ctx, const char *msg)
{
    (void)ctx, (void)msg;
    __builtin_trap();
}

void kmm_platform_static(struct kmm_platform *pf, const struct kmm_memory *mem,
                         void (*fatal)(void *ctx, const char *msg),
                         void (*report)(void *ctx, const char *line))
{
    __builtin_memset(pf, 0, sizeof(*pf));
    pf->name = "static";
    pf->arg = (void *)(uintptr_t)mem;
    pf->open = static_open;
    pf->close = static_close;
    pf->lock_init = pf->lock_fini = pf->lock = pf->unlock = static_lock_nop;
    pf->barrier_all = static_barrier_all;
    pf->fatal = fatal ? fatal : static_fatal_trap;
    pf->report = report;
}
