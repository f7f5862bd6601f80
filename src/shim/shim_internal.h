/* shim_internal.h - libkmm-malloc's own interface between its files
 * (src/shim/ only), and the few operating-system services it needs, which
 * src/platform/shim_os.c provides (nothing in src/shim/ calls the OS).
 *
 * The shim is a layer above kmm's public API on kmm_default(): it owns no
 * pages of its own. Each allocation it returns is kmm_malloc's (sizes up to
 * a page), kmm_vmalloc's (larger), or, before kmm_default() exists, the
 * bootstrap arena's (bootstrap.c). In hardened mode a zero-size allocation
 * is the zero region's (hardened.c): address space that is never
 * accessible.
 */
#ifndef KMM_SHIM_INTERNAL_H
#define KMM_SHIM_INTERNAL_H

#include "internal.h"
#include <kmm/shim.h>
#include <kmm.h>

#define SHIM_EXPORT __attribute__((visibility("default")))

/* The entries (malloc.c), declared here rather than through <stdlib.h>, so
 * that this header stays free of libc headers. */
void *malloc(size_t size);
void free(void *p);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t size);
void *reallocarray(void *p, size_t n, size_t size);
int posix_memalign(void **out, size_t align, size_t size);
void *aligned_alloc(size_t align, size_t size);
void *memalign(size_t align, size_t size);
void *valloc(size_t size);
void *pvalloc(size_t size);
size_t malloc_usable_size(void *p);
int malloc_trim(size_t pad);
/* C++'s operators (new.c), by their mangled names. */
void *_Znwm(size_t n);
void *_Znam(size_t n);
void *_ZnwmRKSt9nothrow_t(size_t n, const void *t);
void *_ZnamRKSt9nothrow_t(size_t n, const void *t);
void *_ZnwmSt11align_val_t(size_t n, size_t a);
void *_ZnamSt11align_val_t(size_t n, size_t a);
void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *t);
void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, const void *t);
void _ZdlPv(void *p);
void _ZdaPv(void *p);
void _ZdlPvm(void *p, size_t n);
void _ZdaPvm(void *p, size_t n);
void _ZdlPvRKSt9nothrow_t(void *p, const void *t);
void _ZdaPvRKSt9nothrow_t(void *p, const void *t);
void _ZdlPvSt11align_val_t(void *p, size_t a);
void _ZdaPvSt11align_val_t(void *p, size_t a);
void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a);
void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t a);
void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *t);
void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, const void *t);

/* ---- malloc.c ------------------------------------------------------------- */

/* The options in force (KMM_SHIM_* bits), fixed once the memory system is
 * up; read on every call that has a hardened variant. */
extern unsigned kmm__shim_opts KMM_HIDDEN;
/* Sizes up to SHIM_SMALL_PAGES pages are kmm_malloc's, larger ones
 * kmm_vmalloc's (with a guard page). */
#define SHIM_SMALL_PAGES 4
extern size_t kmm__shim_small_max KMM_HIDDEN;
/* kmm_default() once the shim is up, else NULL (acquire). */
extern struct kmm *kmm__shim_mm KMM_HIDDEN;

/* The memory system, made on first use (slow path of every entry). NULL
 * only while this very thread is making it: then serve from the bootstrap
 * arena. */
KMM_HIDDEN struct kmm *kmm__shim_init(void);

/* The routing every entry shares, on a live mm (hardened mode aside). */
KMM_HIDDEN void *kmm__shim_alloc(struct kmm *mm, size_t size, size_t align, bool zero, const char *fn);
KMM_HIDDEN void kmm__shim_free(struct kmm *mm, void *p, const char *fn);
/* kmm_malloc, or kmm_malloc_aligned above KMM_MALLOC_ALIGN. */
KMM_HIDDEN void *kmm__shim_small(struct kmm *mm, size_t size, size_t align);
/* kmm_vmalloc (kmm_vmalloc_aligned above a page), mapped at first touch;
 * flags: KMM_ZERO or 0. The caller made sure size fits. */
KMM_HIDDEN void *kmm__shim_large(struct kmm *mm, size_t size, size_t align, unsigned flags);

/* Aborts: "kmm: <fn>: <why> <addr>". */
KMM_HIDDEN KMM_NORETURN void kmm__shim_fatal(const char *fn, const char *why, const void *addr);

/* ---- bootstrap.c: allocations made while kmm_default() is being made ------ */

/* The arena: a static buffer, bump-allocated, never reused. Memory the
 * shim's own start (the platform's first calls, which may call malloc)
 * asks for comes from here; freeing it is a no-op. */
KMM_HIDDEN void *kmm__boot_alloc(size_t size, size_t align);
KMM_HIDDEN bool kmm__boot_owns(const void *p);
/* Bytes given at p (its recorded size). */
KMM_HIDDEN size_t kmm__boot_size(const void *p);

/* ---- hardened.c: KMM_OPTIONS=hardened --------------------------------------- */

KMM_HIDDEN void kmm__hard_init(struct kmm *mm);
KMM_HIDDEN void *kmm__hard_alloc(struct kmm *mm, size_t size, size_t align, bool zero, const char *fn);
/* size: what free_sized was told (0: not told); align likewise. */
KMM_HIDDEN void kmm__hard_free(struct kmm *mm, void *p, size_t size, size_t align, const char *fn);
KMM_HIDDEN size_t kmm__hard_usable(struct kmm *mm, const void *p, const char *fn);
KMM_HIDDEN void *kmm__hard_realloc(struct kmm *mm, void *p, size_t size, const char *fn);
/* Whether p lies in the zero region (address space of zero-size objects). */
KMM_HIDDEN bool kmm__hard_zero_owns(const void *p);

/* ---- options.c -------------------------------------------------------------- */

/* Parses KMM_OPTIONS into KMM_SHIM_* bits; reports unknown words. */
KMM_HIDDEN unsigned kmm__shim_parse_options(const char *s);
/* At exit, with KMM_SHIM_STATS: the process's stats to stderr. */
KMM_HIDDEN void kmm__shim_exit_stats(struct kmm *mm, int fd);

/* ---- src/platform/shim_os.c: the operating system, for the shim ------------ */

/* getenv(name), safe before constructors have run. */
KMM_HIDDEN const char *kmm__os_getenv(const char *name);
/* One line to stderr (a newline is added). */
KMM_HIDDEN void kmm__os_say(const char *line);
/* Address space that is never accessible (PROT_NONE), or NULL. */
KMM_HIDDEN void *kmm__os_reserve_none(size_t len);
/* Installs fn as the SIGSEGV/SIGBUS explainer if the program has no handler:
 * fn gets the faulting address, may print, and returns; the signal then
 * takes its default action. */
KMM_HIDDEN void kmm__os_fault_explainer(void (*fn)(const void *addr));
/* Runs fn at process exit (after the program's own atexit handlers). */
KMM_HIDDEN void kmm__os_at_exit(void (*fn)(void));
/* A copy of stderr that the program will not close (close-on-exec), or 2. */
KMM_HIDDEN int kmm__os_keep_stderr(void);
/* Writes the string s to fd. */
KMM_HIDDEN void kmm__os_write(int fd, const char *s);
KMM_HIDDEN long kmm__os_pid(void);
/* A thread id, for the start-up recursion check. */
KMM_HIDDEN long kmm__os_thread_id(void);
/* 64 random bits (getrandom; the clock and addresses if it fails). */
KMM_HIDDEN uint64_t kmm__os_random64(void);
/* pthread_atfork. */
KMM_HIDDEN void kmm__os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));
/* errno = err. */
KMM_HIDDEN void kmm__os_set_errno(int err);

#endif
