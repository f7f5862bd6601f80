/* The shim's entries under other names, for test_shim_tsan: TSan brings its
 * own malloc (it must see every allocation), so under TSan the shim's code
 * cannot be the program's malloc. Compiled with `-include` into the shim's
 * own sources and the test, this renames each entry (also the calls between
 * them, and the C library's declarations of them) to kmm_tsan_<name>: the
 * test calls the shim's code by those names, and everything else, the C
 * library and TSan included, goes on using TSan's malloc. */
#ifndef KMM_TSAN_RENAME_H
#define KMM_TSAN_RENAME_H

#define malloc kmm_tsan_malloc
#define free kmm_tsan_free
#define calloc kmm_tsan_calloc
#define realloc kmm_tsan_realloc
#define reallocarray kmm_tsan_reallocarray
#define posix_memalign kmm_tsan_posix_memalign
#define aligned_alloc kmm_tsan_aligned_alloc
#define memalign kmm_tsan_memalign
#define valloc kmm_tsan_valloc
#define pvalloc kmm_tsan_pvalloc
#define malloc_usable_size kmm_tsan_malloc_usable_size
#define malloc_trim kmm_tsan_malloc_trim
#define free_sized kmm_tsan_free_sized
#define free_aligned_sized kmm_tsan_free_aligned_sized
#define _Znwm kmm_tsan_Znwm
#define _Znam kmm_tsan_Znam
#define _ZnwmRKSt9nothrow_t kmm_tsan_ZnwmRKSt9nothrow_t
#define _ZnamRKSt9nothrow_t kmm_tsan_ZnamRKSt9nothrow_t
#define _ZnwmSt11align_val_t kmm_tsan_ZnwmSt11align_val_t
#define _ZnamSt11align_val_t kmm_tsan_ZnamSt11align_val_t
#define _ZnwmSt11align_val_tRKSt9nothrow_t kmm_tsan_ZnwmSt11align_val_tRKSt9nothrow_t
#define _ZnamSt11align_val_tRKSt9nothrow_t kmm_tsan_ZnamSt11align_val_tRKSt9nothrow_t
#define _ZdlPv kmm_tsan_ZdlPv
#define _ZdaPv kmm_tsan_ZdaPv
#define _ZdlPvm kmm_tsan_ZdlPvm
#define _ZdaPvm kmm_tsan_ZdaPvm
#define _ZdlPvRKSt9nothrow_t kmm_tsan_ZdlPvRKSt9nothrow_t
#define _ZdaPvRKSt9nothrow_t kmm_tsan_ZdaPvRKSt9nothrow_t
#define _ZdlPvSt11align_val_t kmm_tsan_ZdlPvSt11align_val_t
#define _ZdaPvSt11align_val_t kmm_tsan_ZdaPvSt11align_val_t
#define _ZdlPvmSt11align_val_t kmm_tsan_ZdlPvmSt11align_val_t
#define _ZdaPvmSt11align_val_t kmm_tsan_ZdaPvmSt11align_val_t
#define _ZdlPvSt11align_val_tRKSt9nothrow_t kmm_tsan_ZdlPvSt11align_val_tRKSt9nothrow_t
#define _ZdaPvSt11align_val_tRKSt9nothrow_t kmm_tsan_ZdaPvSt11align_val_tRKSt9nothrow_t
/* the weak libstdc++ hooks new.c tests for: absent in this C program */
#define _ZSt15get_new_handlerv kmm_tsan_no_get_new_handler
#define _ZSt17__throw_bad_allocv kmm_tsan_no_throw_bad_alloc

#endif
