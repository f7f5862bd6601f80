/* new.c - C++'s operator new and delete, for programs linked with the shim.
 *
 * Written in C under their mangled names (as mimalloc does), so that the
 * shim needs no C++ runtime: a C program that preloads it does not load
 * libstdc++. A throwing new that finds no memory calls the program's
 * new-handler (std::get_new_handler) and retries, as the standard says;
 * with no handler it throws std::bad_alloc through libstdc++'s own
 * std::__throw_bad_alloc (a C++ program has libstdc++ loaded), which is why
 * this file is compiled with unwind tables (-fexceptions). The nothrow
 * forms return NULL. Sized deletes check the size in hardened mode
 * (free_sized), aligned ones go to the aligned paths.
 */
#include "shim_internal.h"

typedef void (*new_handler_fn)(void);
/* libstdc++'s, when the program has it; weak, so a C program links */
extern new_handler_fn _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

static void *new_failed(size_t size, size_t align, bool nothrow)
{
    for (;;) {
        new_handler_fn h = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
        if (!h) {
            if (nothrow)
                return NULL;
            if (_ZSt17__throw_bad_allocv)
                _ZSt17__throw_bad_allocv();
            kmm__shim_fatal("operator new", "out of memory, and no C++ runtime to throw std::bad_alloc; bytes asked:",
                            (const void *)(uintptr_t)size);
        }
        h();   /* frees memory, throws, or ends the program */
        void *p = align ? aligned_alloc(align, size) : malloc(size);
        if (p)
            return p;
    }
}

static inline void *new_common(size_t size, bool nothrow)
{
    void *p = malloc(size ? size : 1);
    return KMM_LIKELY(p != NULL) ? p : new_failed(size, 0, nothrow);
}

static inline void *new_aligned(size_t size, size_t align, bool nothrow)
{
    if (align & (align - 1))   /* the standard makes that undefined: refuse it loudly */
        kmm__shim_fatal("operator new", "alignment not a power of two:", (const void *)(uintptr_t)align);
    void *p = aligned_alloc(align, size ? size : 1);
    return p ? p : new_failed(size, align, nothrow);
}

#define NOTHROW_T const void *   /* const std::nothrow_t & */

SHIM_EXPORT void *_Znwm(size_t n) { return new_common(n, false); }
SHIM_EXPORT void *_Znam(size_t n) { return new_common(n, false); }
SHIM_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, NOTHROW_T t) { (void)t; return new_common(n, true); }
SHIM_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, NOTHROW_T t) { (void)t; return new_common(n, true); }
SHIM_EXPORT void *_ZnwmSt11align_val_t(size_t n, size_t a) { return new_aligned(n, a, false); }
SHIM_EXPORT void *_ZnamSt11align_val_t(size_t n, size_t a) { return new_aligned(n, a, false); }
SHIM_EXPORT void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, NOTHROW_T t)
{
    (void)t;
    return new_aligned(n, a, true);
}
SHIM_EXPORT void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t n, size_t a, NOTHROW_T t)
{
    (void)t;
    return new_aligned(n, a, true);
}

SHIM_EXPORT void _ZdlPv(void *p) { free(p); }
SHIM_EXPORT void _ZdaPv(void *p) { free(p); }
SHIM_EXPORT void _ZdlPvm(void *p, size_t n) { free_sized(p, n); }
SHIM_EXPORT void _ZdaPvm(void *p, size_t n) { free_sized(p, n); }
SHIM_EXPORT void _ZdlPvRKSt9nothrow_t(void *p, NOTHROW_T t) { (void)t; free(p); }
SHIM_EXPORT void _ZdaPvRKSt9nothrow_t(void *p, NOTHROW_T t) { (void)t; free(p); }
SHIM_EXPORT void _ZdlPvSt11align_val_t(void *p, size_t a) { (void)a; free(p); }
SHIM_EXPORT void _ZdaPvSt11align_val_t(void *p, size_t a) { (void)a; free(p); }
SHIM_EXPORT void _ZdlPvmSt11align_val_t(void *p, size_t n, size_t a) { free_aligned_sized(p, a, n); }
SHIM_EXPORT void _ZdaPvmSt11align_val_t(void *p, size_t n, size_t a) { free_aligned_sized(p, a, n); }
SHIM_EXPORT void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, NOTHROW_T t)
{
    (void)a;
    (void)t;
    free(p);
}
SHIM_EXPORT void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t a, NOTHROW_T t)
{
    (void)a;
    (void)t;
    free(p);
}
