/* bootstrap.c - memory for the calls made while kmm_default() is being made.
 *
 * Making the memory system calls into the C library (pthread_atfork,
 * pthread_key_create, the loader's TLS bookkeeping), and any of those may
 * call malloc on the same thread before there is anything to serve it. Such
 * calls get memory from this static arena: bump allocation with a 16-byte
 * header that records the size (for realloc and malloc_usable_size),
 * nothing ever reused, free a no-op. A few hundred bytes are used in
 * practice; running out is fatal with a message rather than a hang.
 */
#include "shim_internal.h"

#define BOOT_BYTES (64 * 1024)
#define BOOT_HEADER 16

static _Alignas(4096) unsigned char arena[BOOT_BYTES];
static size_t arena_used;   /* bump pointer, atomic */

bool kmm__boot_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)arena < BOOT_BYTES;
}

size_t kmm__boot_size(const void *p)
{
    size_t size;
    __builtin_memcpy(&size, (const unsigned char *)p - BOOT_HEADER, sizeof(size));
    return size;
}

void *kmm__boot_alloc(size_t size, size_t align)
{
    if (align < BOOT_HEADER)
        align = BOOT_HEADER;
    if (size > BOOT_BYTES || align > BOOT_BYTES / 4)
        return NULL;
    size_t need = (size + BOOT_HEADER - 1) & ~(size_t)(BOOT_HEADER - 1);
    size_t old = __atomic_load_n(&arena_used, __ATOMIC_RELAXED), start, end;
    do {
        start = (old + BOOT_HEADER + align - 1) & ~(align - 1);
        end = start + need;
        if (end > BOOT_BYTES)
            kmm__shim_fatal("malloc", "the start-up arena is exhausted; its end is at", arena + BOOT_BYTES);
    } while (!__atomic_compare_exchange_n(&arena_used, &old, end, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    __builtin_memcpy(arena + start - BOOT_HEADER, &size, sizeof(size));
    return arena + start;
}
