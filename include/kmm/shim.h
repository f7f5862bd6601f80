/* kmm/shim.h - libkmm-malloc: the C library's allocation functions on kmm.
 *
 * libkmm-malloc.so defines malloc and its family, so that a program runs on
 * kmm's process-wide memory system (kmm_default()) without a change:
 *
 *     LD_PRELOAD=/usr/local/lib/libkmm-malloc.so program ...
 *     cc program.c $(pkg-config --libs kmm-malloc)        (linked directly)
 *
 * What serves what (the rule of kmm_kvmalloc, its threshold at 4 pages):
 * up to 4 pages (16 KiB), kmm_malloc (slabs, then whole pages; lock-free
 * per-thread magazines and page caches; physically contiguous); above,
 * kmm_vmalloc (one unmapped guard page behind every buffer, so a write
 * past the end of a large buffer faults at once; pages mapped at first
 * touch). Aligned requests likewise, from kmm_malloc_aligned and
 * kmm_vmalloc_aligned. A large buffer grown by realloc grows by a quarter
 * at least (malloc_usable_size tells). Freed memory goes back to the OS
 * once it stayed free for 100-200 ms, while the program goes on
 * allocating (malloc_trim(0): at once).
 *
 * Every function is what POSIX and C23 say, with glibc's choices where they
 * leave one: malloc(0) is a unique pointer (a 16-byte object); realloc(p, 0)
 * frees p and returns NULL; errno ENOMEM on every failed allocation, EINVAL
 * from aligned_alloc/memalign for an alignment that is not a power of two
 * (posix_memalign returns the error instead). A size too large to serve,
 * and a calloc/reallocarray whose product overflows, fail with ENOMEM and
 * no message.
 *
 * Misuse aborts with one line on stderr naming the call, what was wrong and
 * the address: a double free (also from another thread), a free or realloc
 * of a pointer malloc never gave (another allocator's, the stack, a global),
 * of the middle of an object, of freed memory. A pointer that was not from
 * this library is never freed silently: a program that dlopen()s the shim
 * after allocating with another malloc must not hand those pointers to it.
 * Memory the loader's own minimal malloc gave before the shim was reached is
 * recognised and left alone (the bootstrap arena, below).
 *
 * Options, in the environment variable KMM_OPTIONS (comma-separated):
 *   hardened   canaries behind small objects (checked at free), freed small
 *              objects zeroed and held in a quarantine (a write to one is
 *              reported when it leaves), large buffers unmapped at free and
 *              their addresses not reused soon, malloc(0) a pointer to
 *              inaccessible memory, sized-free mismatches caught, fresh
 *              memory always zero. Costs time: see bench/suite.
 *   stats      print the process's `kmm stats` to stderr at exit.
 *   verbose    say at start which options are in force, and report each
 *              fault that kmm can explain (a guard page, a freed buffer).
 * Unknown words are reported once and ignored.
 *
 * A fault in kmm's memory (a guard page, a freed large buffer, a zero-size
 * allocation) is explained on stderr before the process dies of SIGSEGV, if
 * the program has not installed its own SIGSEGV handler.
 */
#ifndef KMM_SHIM_H
#define KMM_SHIM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* C23's sized frees (glibc 2.36 does not declare them). size must be the
 * size asked of malloc/calloc/realloc (free_aligned_sized: of aligned_alloc,
 * with its alignment). In hardened mode a mismatch is reported and aborts;
 * otherwise they are free(). */
void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t alignment, size_t size);

/* Which options are in force (KMM_OPTIONS, read at the first allocation):
 * a mask of the KMM_SHIM_* bits. For tests and tools. */
#define KMM_SHIM_HARDENED 1u
#define KMM_SHIM_STATS    2u
#define KMM_SHIM_VERBOSE  4u
unsigned kmm_shim_options(void);

#ifdef __cplusplus
}
#endif
#endif
