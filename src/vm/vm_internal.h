/* vm_internal.h - the vmalloc layer's own structures (src/vm/ only).
 *
 * The vmalloc space is tiled by ranges, each one node of an AVL tree keyed by
 * its first page number (address >> page_shift): a free range, or an area
 * (its mapped pages, then one guard page). Each node also carries the length
 * of the largest free range in its subtree, so the lowest free range that
 * can hold a request is found by descending the tree (vatree.c).
 *
 * Invariants (checked by kmm__vm_check):
 *  - the ranges tile the space: in address order each starts where the one
 *    before ends, the first at the space's start, the last ends at its end;
 *  - no two free ranges touch (a free merges with its free neighbours);
 *  - AVL: heights are right and differ by at most one between siblings;
 *    max_free is the largest free range's length in the subtree;
 *  - an area has mapped >= 1 pages and pages == mapped + 1 (the guard);
 *    its runs start at page 0, ascend, and end at mapped; a vmalloc area's
 *    frames are allocated in the page allocator;
 *  - the counters (areas, pages, lazy, mappings, free) match the tree;
 *  - a VM_ORPHAN area counts only in mappings (its runs + 1, whatever
 *    they were when the fork cut its thread short).
 */
#ifndef KMM_VM_INTERNAL_H
#define KMM_VM_INTERNAL_H

#include "internal.h"
#include <kmm/vm.h>

enum vm_state {
    VM_FREE,      /* free range */
    VM_BUSY,      /* being mapped or unmapped by a thread, outside the lock: no one else's */
    VM_VMALLOC,   /* live kmm_vmalloc area */
    VM_VMAP,      /* live kmm_vmap area */
    VM_LAZY,      /* freed kmm_vmalloc area, still mapped, waiting for a purge */
    VM_ORPHAN,    /* VM_BUSY in a child of fork whose thread is not there: kept for good */
};

/* Pages [first, next run's first or mapped) of an area map the frames from phys on. */
struct vm_run {
    kmm_phys_t phys;
    size_t first;
};

#define VM_INLINE_RUNS 2

struct vm_node {
    struct vm_node *left, *right;
    uintptr_t first;                /* first page number (address >> page_shift) */
    size_t pages;                   /* length in pages; an area's includes its guard page */
    size_t max_free;                /* largest free range in this subtree, pages */
    uint8_t height;
    uint8_t state;                  /* enum vm_state */
    uint8_t prot;                   /* KMM_PROT_* of the mapping */
    uint8_t area_mask;              /* vmalloc: the areas its pages were asked from (KMM_AREA_ANY for any) */
    bool nopopulate;                /* KMM_NOPOPULATE: mapped without filling the page tables */
    /* areas only: */
    size_t mapped;                  /* pages mapped: pages - 1 */
    size_t size;                    /* bytes asked for */
    size_t nr_runs, cap_runs;
    struct vm_run *runs;            /* inline_runs, or a metadata object (kmm__meta_obj_alloc) when more */
    struct vm_run inline_runs[VM_INLINE_RUNS];
    const char *tag;
    const void *caller;
    struct vm_node *next;           /* a lazy list, or a caller's private list */
};

/* Lazily freed areas up to this many pages are reused by allocations of
 * the same size (256 KiB of 4 KiB pages). */
#define VM_WARM_PAGES 64
/* KMM_ZERO | KMM_NOPOPULATE: runs of at least this many bytes are zeroed by
 * dropping their frames (platform frames_zero) instead of writing them. */
#define VM_DROP_BYTES (64 * 1024)

struct kmm_vm {
    struct kmm *mm;
    uintptr_t start;                /* the space: [start, start + bytes) */
    size_t bytes;
    uintptr_t first_page, end_page; /* the same in page numbers */
    bool strict;
    bool spread;                    /* KMM_VMALLOC_SPREAD: next fit from cursor */
    size_t lazy_max;                /* pages of lazy areas that start a purge */
    size_t max_mappings;

    struct kmm_lock lock;
    /* protected by lock: */
    struct vm_node *root;
    uintptr_t cursor;               /* spread: the page after the last area placed */
    /* VM_LAZY areas, newest first, by pages mapped: lazy[n] holds those of
     * n pages, lazy[0] those of more than VM_WARM_PAGES. An allocation of
     * n <= VM_WARM_PAGES pages takes the head of lazy[n] back as it is,
     * mapped: no page allocation, no platform call. */
    struct vm_node *lazy[VM_WARM_PAGES + 1];
    size_t lazy_areas, lazy_pages;
    uint64_t reused;
    size_t areas, pages, vmap_areas, vmap_pages;
    size_t free_ranges, free_pages;
    size_t mappings;                /* runs + 1 per area, of every area mapped or being mapped */
    uint64_t allocs, frees, purges, refused;

    /* atomic: */
    uint64_t map_calls, unmap_calls;
};

/* vatree.c: the AVL tree of ranges. Every function takes and returns the
 * root (which rotations change). */
KMM_HIDDEN struct vm_node *kmm__vt_insert(struct vm_node *root, struct vm_node *n);
KMM_HIDDEN struct vm_node *kmm__vt_remove(struct vm_node *root, uintptr_t first);
/* After a node's pages or state changed (its key did not move past a
 * neighbour): recomputes max_free on the path to it. */
KMM_HIDDEN void kmm__vt_update(struct vm_node *root, uintptr_t first);
/* The range holding page number page, or NULL. */
KMM_HIDDEN struct vm_node *kmm__vt_find(struct vm_node *root, uintptr_t page);
/* The free range holding the lowest fit for pages at a multiple of align
 * pages (a power of two) that starts at page from or above (0: anywhere);
 * *at gets the fit's first page. NULL if none. */
KMM_HIDDEN struct vm_node *kmm__vt_lowest_fit(struct vm_node *root, size_t pages, size_t align, uintptr_t from,
                                              uintptr_t *at);
/* Calls fn on every node in address order; stops at and returns fn's first nonzero. */
KMM_HIDDEN int kmm__vt_walk(struct vm_node *root, int (*fn)(void *arg, struct vm_node *n), void *arg);
/* Checks order, heights, balance and max_free: NULL or what is broken. */
KMM_HIDDEN const char *kmm__vt_check(struct vm_node *root);

static inline uintptr_t vm_node_end(const struct vm_node *n) { return n->first + n->pages; }

/* What the counters of struct kmm_vm say, as counted from the tree: one
 * node added by vm_count. kmm_check compares them; a fork's child, where a
 * gone thread may have been between its updates, takes them. */
struct vm_counts {
    size_t areas, pages, vmap_areas, vmap_pages, lazy_areas, lazy_pages;
    size_t free_ranges, free_pages;
    size_t mappings;                /* runs + 1 per area (the reservation not counted) */
};
static inline void vm_count(struct vm_counts *c, const struct vm_node *n)
{
    switch (n->state) {
    case VM_FREE:
        c->free_ranges++;
        c->free_pages += n->pages;
        return;
    case VM_VMALLOC:
        c->areas++;
        c->pages += n->mapped;
        break;
    case VM_LAZY:
        c->lazy_areas++;
        c->lazy_pages += n->mapped;
        break;
    case VM_VMAP:
        c->vmap_areas++;
        c->vmap_pages += n->mapped;
        break;
    default:   /* VM_BUSY, VM_ORPHAN: mapped, in no count but the mappings */
        break;
    }
    c->mappings += n->nr_runs + 1;
}

/* ---- for the core (core/kmm.c): check, destroy, fork ---------------------- */
KMM_HIDDEN int kmm__vm_check(struct kmm *mm);
KMM_HIDDEN void kmm__vm_destroy(struct kmm *mm);
/* Takes or releases the vmalloc lock, for fork. */
KMM_HIDDEN void kmm__vm_fork_lock(struct kmm *mm, bool lock);
/* In the child of a fork (vm lock held or no other thread): areas other
 * threads were working on are kept for good (VM_ORPHAN); counters recounted. */
KMM_HIDDEN void kmm__vm_fork_child(struct kmm *mm);

#endif
