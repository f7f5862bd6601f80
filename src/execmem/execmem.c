/* execmem.c - PLACEHOLDER (issue 15 in progress): executable memory. */
#include "internal.h"
#include <kmm/execmem.h>

void *kmm_execmem_alloc(struct kmm *mm, size_t size)
{
    (void)size;
    kmm__refuse(mm, KMM_ENOSYS, "kmm_execmem_alloc", "not built yet");
    return NULL;
}
int kmm_execmem_write(struct kmm *mm, void *dst, const void *src, size_t len) { (void)mm, (void)dst, (void)src, (void)len; return -KMM_EINVAL; }
int kmm_execmem_write_batch(struct kmm *mm, const struct kmm_execmem_piece *pieces, size_t n) { (void)mm, (void)pieces, (void)n; return -KMM_EINVAL; }
void kmm_execmem_free(struct kmm *mm, void *p) { (void)mm, (void)p; }
size_t kmm_execmem_usable_size(struct kmm *mm, const void *p) { (void)mm, (void)p; return 0; }
void kmm_execmem_stats(struct kmm *mm, struct kmm_execmem_stats *st) { (void)mm; *st = (struct kmm_execmem_stats){ 0 }; }
int kmm__execmem_check(struct kmm *mm) { (void)mm; return 0; }
void kmm__execmem_destroy(struct kmm *mm) { (void)mm; }
void kmm__execmem_fork_lock(struct kmm *mm, bool lock) { (void)mm, (void)lock; }
void kmm__execmem_fork_child(struct kmm *mm) { (void)mm; }
