/* table.c - secret memory's records by address: a chained hash table of
 * page numbers, grown by doubling (the new buckets are allocated by the
 * caller with the lock dropped), and a list of every record in allocation
 * order for the walks (check, fork, destroy). Everything under
 * mm->secret_lock. */
#include "secret_internal.h"

/* Fibonacci hashing of the page number: the top bits of a multiplication
 * spread consecutive pages (reservations are often adjacent) over buckets. */
static size_t secret_hash(const struct kmm *mm, uintptr_t addr, size_t nbuckets)
{
    uint64_t h = (uint64_t)(addr >> mm->page_shift) * 0x9E3779B97F4A7C15ull;
    return nbuckets > 1 ? (size_t)(h >> (64 - floor_log2(nbuckets))) : 0;
}

struct secret *kmm__secret_find(const struct kmm *mm, struct kmm_secret *s, uintptr_t addr)
{
    if (!s->nbuckets)
        return NULL;
    for (struct secret *r = s->bucket[secret_hash(mm, addr, s->nbuckets)]; r; r = r->hash_next)
        if (r->addr == addr)
            return r;
    return NULL;
}

void kmm__secret_insert(const struct kmm *mm, struct kmm_secret *s, struct secret *r)
{
    struct secret **b = &s->bucket[secret_hash(mm, r->addr, s->nbuckets)];
    r->hash_next = *b;
    *b = r;
    r->seq = s->next_seq++;
    r->prev = s->newest;
    r->next = NULL;
    if (s->newest)
        s->newest->next = r;
    else
        s->oldest = r;
    s->newest = r;
    s->count++;
}

void kmm__secret_remove(const struct kmm *mm, struct kmm_secret *s, struct secret *r)
{
    struct secret **p = &s->bucket[secret_hash(mm, r->addr, s->nbuckets)];
    while (*p != r)
        p = &(*p)->hash_next;
    *p = r->hash_next;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->oldest = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->newest = r->prev;
    r->hash_next = r->prev = r->next = NULL;
    s->count--;
}

struct secret **kmm__secret_rehash(const struct kmm *mm, struct kmm_secret *s, struct secret **buckets, size_t *n)
{
    if (*n <= s->nbuckets)
        return buckets;   /* another thread grew it first: ours is the leftover */
    for (struct secret *r = s->oldest; r; r = r->next) {
        struct secret **b = &buckets[secret_hash(mm, r->addr, *n)];
        r->hash_next = *b;
        *b = r;
    }
    struct secret **old = s->bucket;
    size_t old_n = s->nbuckets;
    s->bucket = buckets;
    s->nbuckets = *n;
    *n = old_n;
    return old;
}

/* The list and the table hold the same records, each once, in its bucket;
 * the list is in seq order; count matches both. */
int kmm__secret_table_check(const struct kmm *mm, struct kmm_secret *s)
{
    size_t listed = 0;
    uint64_t last_seq = 0;
    for (struct secret *r = s->oldest; r; r = r->next) {
        if ((r->prev ? r->prev->next : s->oldest) != r || (r->next ? r->next->prev : s->newest) != r)
            return kmm__check_fail((struct kmm *)mm, "secret: the list of live records is broken", UINT64_MAX);
        if (listed && r->seq <= last_seq)
            return kmm__check_fail((struct kmm *)mm, "secret: live records out of allocation order", UINT64_MAX);
        if (kmm__secret_find(mm, s, r->addr) != r)
            return kmm__check_fail((struct kmm *)mm, "secret: a live record is not in its bucket", UINT64_MAX);
        last_seq = r->seq;
        if (++listed > s->count)
            break;
    }
    size_t hashed = 0;
    for (size_t b = 0; b < s->nbuckets; b++)
        for (struct secret *r = s->bucket[b]; r && hashed <= s->count; r = r->hash_next) {
            if (secret_hash(mm, r->addr, s->nbuckets) != b)
                return kmm__check_fail((struct kmm *)mm, "secret: a record in the wrong bucket", UINT64_MAX);
            hashed++;
        }
    if (listed != s->count || hashed != s->count)
        return kmm__check_fail((struct kmm *)mm, "secret: live record count (list, table, counter differ)",
                               UINT64_MAX);
    if (s->count > s->nbuckets)
        return kmm__check_fail((struct kmm *)mm, "secret: the table is fuller than its growth rule allows",
                               UINT64_MAX);
    return 0;
}
