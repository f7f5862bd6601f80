/* secret.c - PLACEHOLDER (issue 15 in progress): secret memory. */
#include "internal.h"
#include <kmm/secret.h>

void *kmm_secret_alloc(struct kmm *mm, size_t size)
{
    (void)size;
    kmm__refuse(mm, KMM_ENOSYS, "kmm_secret_alloc", "not built yet");
    return NULL;
}
void kmm_secret_free(struct kmm *mm, void *p) { (void)mm, (void)p; }
int kmm_secret_set_backing(struct kmm *mm, enum kmm_secret_backing backing) { (void)mm, (void)backing; return -KMM_ENOSYS; }
enum kmm_secret_backing kmm_secret_backing(struct kmm *mm) { (void)mm; return KMM_SECRET_UNMAPPED; }
const char *kmm_secret_backing_name(enum kmm_secret_backing backing)
{
    return backing == KMM_SECRET_MEMFD ? "memfd_secret" : "unmapped cache";
}
bool kmm_secret_backing_available(struct kmm *mm, enum kmm_secret_backing backing) { (void)mm, (void)backing; return false; }
void kmm_secret_stats(struct kmm *mm, struct kmm_secret_stats *st) { (void)mm; *st = (struct kmm_secret_stats){ 0 }; }
int kmm__secret_check(struct kmm *mm) { (void)mm; return 0; }
void kmm__secret_destroy(struct kmm *mm) { (void)mm; }
void kmm__secret_fork_lock(struct kmm *mm, bool lock) { (void)mm, (void)lock; }
void kmm__secret_fork_child(struct kmm *mm) { (void)mm; }
