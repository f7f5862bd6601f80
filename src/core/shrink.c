/* shrink.c - the shrinker registry, and the shrinkers' part of a failing
 * allocation (kmm__shrink; the stages are in page/buddy.c).
 *
 * The registry is a list of entries in registration order, in metadata
 * memory, under mm->shrink_lock. The lock is a leaf: no callback, no
 * allocation, no platform call under it. A callback runs with the lock
 * dropped, its entry pinned (active > 0): unregister unlinks the entry at
 * once but frees it only when no thread runs its callbacks any more, so
 * several threads may run shrinkers at once and an unregister waits only
 * for the callbacks of its own shrinker.
 *
 * A walk of the list remembers where it is by the last entry's seq, never
 * by a pointer to it: the entry it pinned may be unlinked meanwhile, and its
 * successor freed, so the walk finds its next entry from the head, the first
 * one with a larger seq. Shrinkers are few; the walk is O(shrinkers^2) per
 * failing allocation.
 *
 * No recursion: while a callback runs, its thread (KMM_THREAD_CACHE=0, the
 * freestanding build on one CPU or serialised by its caller: the memory
 * system) records the entry in `running`; kmm__shrink returns 0 while it is
 * set, so a callback whose own allocation fails does not run the shrinkers
 * again, and kmm_unregister_shrinker refuses to run from a callback (it
 * would wait for itself).
 */
#include "internal.h"
#include <kmm/unmapped.h>

struct shrink_entry {
    struct shrink_entry *next;        /* mm->shrinkers, in seq order (shrink_lock) */
    const struct kmm_shrinker *id;    /* the caller's struct: what unregister names */
    struct kmm_shrinker ops;          /* a copy, read without the lock (never written after registering) */
    uint64_t seq;                     /* registration order: strictly increasing along the list */
    uint64_t scans, scanned;          /* scan calls, pages they said they gave back (shrink_lock) */
    unsigned active;                  /* threads running its callbacks now (shrink_lock) */
};

#if KMM_THREAD_CACHE
static _Thread_local const struct shrink_entry *running_here __attribute__((tls_model("initial-exec")));
static inline const struct shrink_entry **running(struct kmm *mm)
{
    (void)mm;
    return &running_here;
}
#else
static inline const struct shrink_entry **running(struct kmm *mm) { return &mm->shrink_running; }
#endif

/* The first entry registered after seq, pinned; NULL at the end. */
static struct shrink_entry *pin_next(struct kmm *mm, uint64_t seq)
{
    kmm_lock(mm, &mm->shrink_lock);
    struct shrink_entry *e = mm->shrinkers;
    while (e && e->seq <= seq)
        e = e->next;
    if (e)
        e->active++;
    kmm_unlock(mm, &mm->shrink_lock);
    return e;
}

static void unpin(struct kmm *mm, struct shrink_entry *e, bool scanned, size_t got)
{
    kmm_lock(mm, &mm->shrink_lock);
    if (scanned) {
        e->scans++;
        e->scanned += got;
    }
    e->active--;
    kmm_unlock(mm, &mm->shrink_lock);
}

/* e->ops.count, with e marked as running on this thread. */
static size_t call_count(struct kmm *mm, const struct shrink_entry *e)
{
    const struct shrink_entry *outer = *running(mm);
    *running(mm) = e;
    size_t n = e->ops.count(e->ops.arg);
    *running(mm) = outer;
    return n;
}

/* Each shrinker in registration order is asked for what is still missing,
 * no more than its count: the first ones registered give back first, and
 * the later ones are not touched once enough came back. Linux instead asks
 * every shrinker for a share scaled by its count and by the reclaim
 * priority, so that no cache is emptied alone; that matters for a kernel
 * that reclaims all the time. Here memory is small, a failing allocation is
 * rare, and what one needs is a few pages now: asking in order keeps the
 * cost to the shrinkers that can pay it, and makes the order a caller
 * chooses (the cheapest shrinker first) mean something. */
size_t kmm__shrink(struct kmm *mm, size_t nr_pages)
{
    if (*running(mm))
        return 0;   /* a callback's own allocation failed: no shrinkers inside shrinkers */
    size_t freed = 0;
    uint64_t seq = 0;
    struct shrink_entry *e;
    while ((!nr_pages || freed < nr_pages) && (e = pin_next(mm, seq))) {
        seq = e->seq;
        *running(mm) = e;
        size_t can = e->ops.count(e->ops.arg), got = 0;
        if (can) {
            size_t want = nr_pages && nr_pages - freed < can ? nr_pages - freed : can;
            got = e->ops.scan(e->ops.arg, want);
        }
        *running(mm) = NULL;
        unpin(mm, e, can != 0, got);
        freed += got;
    }
    return freed;
}

size_t kmm_shrink(struct kmm *mm, size_t nr_pages)
{
    mm_live(mm, "kmm_shrink");
    return kmm__shrink(mm, nr_pages);
}

int kmm_register_shrinker(struct kmm *mm, const struct kmm_shrinker *s)
{
    mm_live(mm, "kmm_register_shrinker");
    if (!s || !s->count || !s->scan) {
        kmm__refuse(mm, KMM_EINVAL, "kmm_register_shrinker", "a shrinker needs its count and scan callbacks");
        return -KMM_EINVAL;
    }
    struct shrink_entry *e = kmm__meta_obj_alloc(mm, sizeof(*e));   /* outside the lock */
    if (!e) {
        kmm__refuse(mm, KMM_ENOMEM, "kmm_register_shrinker", NULL);
        return -KMM_ENOMEM;
    }
    e->id = s;
    e->ops = *s;
    kmm_lock(mm, &mm->shrink_lock);
    struct shrink_entry **pp = &mm->shrinkers;
    bool twice = false;
    for (; *pp; pp = &(*pp)->next)
        twice |= (*pp)->id == s;
    if (!twice) {
        e->seq = ++mm->shrink_seq;
        *pp = e;
    }
    kmm_unlock(mm, &mm->shrink_lock);
    if (twice) {
        kmm__meta_obj_free(mm, e, sizeof(*e));
        kmm__refuse(mm, KMM_EINVAL, "kmm_register_shrinker", "shrinker already registered");
        return -KMM_EINVAL;
    }
    return 0;
}

static KMM_NORETURN void unregister_fatal(struct kmm *mm, const struct kmm_shrinker *s, const char *why)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: kmm_unregister_shrinker: ");
    kmm__msg_str(&m, why);
    kmm__msg_str(&m, ": ");
    kmm__msg_hex(&m, (uint64_t)(uintptr_t)s);
    if (s && s->name) {
        kmm__msg_str(&m, " (");
        kmm__msg_str(&m, s->name);
        kmm__msg_str(&m, ")");
    }
    kmm__fatal(mm, &m);
}

void kmm_unregister_shrinker(struct kmm *mm, const struct kmm_shrinker *s)
{
    mm_live(mm, "kmm_unregister_shrinker");
    if (*running(mm))   /* it would wait for itself, or for a thread that waits for it */
        unregister_fatal(mm, s, "called from a shrinker callback");
    kmm_lock(mm, &mm->shrink_lock);
    struct shrink_entry **pp = &mm->shrinkers;
    while (*pp && (*pp)->id != s)
        pp = &(*pp)->next;
    struct shrink_entry *e = *pp;
    if (!e) {
        kmm_unlock(mm, &mm->shrink_lock);
        unregister_fatal(mm, s, "not a registered shrinker");
    }
    *pp = e->next;
    /* unlinked: no walk pins it again; wait for the callbacks running */
    while (e->active) {
        kmm_unlock(mm, &mm->shrink_lock);
        cpu_relax();
        kmm_lock(mm, &mm->shrink_lock);
    }
    kmm_unlock(mm, &mm->shrink_lock);
    kmm__meta_obj_free(mm, e, sizeof(*e));
}

void kmm_shrinker_for_each(struct kmm *mm, void (*fn)(void *arg, const struct kmm_shrinker_info *info), void *arg)
{
    mm_live(mm, "kmm_shrinker_for_each");
    uint64_t seq = 0;
    struct shrink_entry *e;
    while ((e = pin_next(mm, seq))) {
        seq = e->seq;
        struct kmm_shrinker_info info = { .name = e->ops.name ? e->ops.name : "(unnamed)" };
        kmm_lock(mm, &mm->shrink_lock);
        info.scans = e->scans;
        info.scanned = e->scanned;
        kmm_unlock(mm, &mm->shrink_lock);
        info.count = call_count(mm, e);
        unpin(mm, e, false, 0);
        fn(arg, &info);   /* unpinned: fn may unregister it, or any other */
    }
}

int kmm__shrink_check(struct kmm *mm)
{
    const char *broken = NULL;
    kmm_lock(mm, &mm->shrink_lock);
    uint64_t seq = 0;
    for (struct shrink_entry *e = mm->shrinkers; e && !broken; e = e->next) {
        if (e->seq <= seq || e->seq > mm->shrink_seq)
            broken = "shrinkers: registration order (seq) broken";
        else if (!e->id || !e->ops.count || !e->ops.scan)
            broken = "shrinkers: an entry without its shrinker or callbacks";
        for (struct shrink_entry *f = e->next; f && !broken; f = f->next)
            if (f->id == e->id)
                broken = "shrinkers: a shrinker registered twice";
        seq = e->seq;
    }
    kmm_unlock(mm, &mm->shrink_lock);
    return broken ? kmm__check_fail(mm, broken, UINT64_MAX) : 0;
}

void kmm__shrink_fork_lock(struct kmm *mm, bool lock)
{
    if (lock)
        kmm_lock(mm, &mm->shrink_lock);
    else
        kmm_unlock(mm, &mm->shrink_lock);
}

/* The threads that had entries pinned are not in the child, but the one
 * that forked, which may have forked from a callback: its pin stays. */
void kmm__shrink_fork_child(struct kmm *mm)
{
    const struct shrink_entry *mine = *running(mm);
    for (struct shrink_entry *e = mm->shrinkers; e; e = e->next)
        e->active = e == mine ? 1 : 0;
}

/* At kmm_destroy, before the layers: no callback is called, and the layers
 * destroyed after this must not unregister (their memory goes with the
 * memory system's, as zsmalloc's pools do in kmm__zs_destroy_all). */
void kmm__shrink_destroy(struct kmm *mm)
{
    struct shrink_entry *e = mm->shrinkers;
    mm->shrinkers = NULL;
    while (e) {
        struct shrink_entry *next = e->next;
        kmm__meta_obj_free(mm, e, sizeof(*e));
        e = next;
    }
}
