/* shrink.c - PLACEHOLDER (issue 15 in progress): the shrinker registry. */
#include "internal.h"
#include <kmm/unmapped.h>

size_t kmm__shrink(struct kmm *mm, size_t nr_pages) { (void)mm, (void)nr_pages; return 0; }
void kmm__shrink_fork_lock(struct kmm *mm, bool lock) { (void)mm, (void)lock; }
void kmm__shrink_destroy(struct kmm *mm) { (void)mm; }
int kmm_register_shrinker(struct kmm *mm, const struct kmm_shrinker *s) { (void)mm, (void)s; return 0; }
void kmm_unregister_shrinker(struct kmm *mm, const struct kmm_shrinker *s) { (void)mm, (void)s; }
size_t kmm_shrink(struct kmm *mm, size_t nr_pages) { return kmm__shrink(mm, nr_pages); }
void kmm_shrinker_for_each(struct kmm *mm, void (*fn)(void *arg, const struct kmm_shrinker_info *info), void *arg)
{
    (void)mm, (void)fn, (void)arg;
}
