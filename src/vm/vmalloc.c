/* vmalloc.c - areas of the vmalloc space: kmm_vmalloc, kmm_vmap, their
 * frees, lazy purging, in-place realloc, and kmm_kvmalloc.
 *
 * Life of an area: a free range is carved under the lock and marked VM_BUSY
 * (no other call may touch it); pages are taken and mapped without the lock;
 * the lock is taken again to make it live. A free marks it VM_LAZY (or
 * VM_BUSY when strict) and, outside the lock, unmaps it, frees its pages and
 * only then gives its addresses back: a page never returns to the page
 * allocator while the area still maps it. The lock is a leaf: no page or
 * object allocation and no platform call is made under it.
 */
#include "vm_internal.h"

/* ---- the space --------------------------------------------------------------- */

/* Nodes and run arrays are metadata objects (core/meta.c), out of reach of
 * an overflow of kmm_malloc memory: a run array says which frames a purge
 * frees. */
static struct vm_node *node_new(struct kmm_vm *vm)
{
    struct vm_node *n = kmm__meta_obj_alloc(vm->mm, sizeof(*n));
    if (n) {
        n->runs = n->inline_runs;
        n->cap_runs = VM_INLINE_RUNS;
    }
    return n;
}

static void vfree_now(struct kmm_vm *vm, void *p, const char *fn);

#define RUN_ARRAY_TAG "kmm_vmalloc (run array)"

/* Frees a run array of cap runs: a metadata object, or a vmalloc area
 * unmapped at once (freed lazily, it would be a lazy area that a purge
 * makes: a purge would never end with none left). */
static void run_array_free(struct kmm_vm *vm, struct vm_run *runs, size_t cap, const struct vm_run *inline_runs)
{
    if (runs == inline_runs)
        return;
    if (kmm__vm_owns(vm->mm, runs))
        vfree_now(vm, runs, RUN_ARRAY_TAG);
    else
        kmm__meta_obj_free(vm->mm, runs, cap * sizeof(*runs));
}

/* Gives back an area's run array (it is about to become a free range). */
static void runs_release(struct kmm_vm *vm, struct vm_node *n)
{
    run_array_free(vm, n->runs, n->cap_runs, n->inline_runs);
    n->runs = n->inline_runs;
    n->cap_runs = VM_INLINE_RUNS;
    n->nr_runs = 0;
}

static void node_delete(struct kmm_vm *vm, struct vm_node *n)
{
    if (!n)
        return;
    runs_release(vm, n);
    kmm__meta_obj_free(vm->mm, n, sizeof(*n));
}

static void nodes_delete(struct kmm_vm *vm, struct vm_node *list)
{
    while (list) {
        struct vm_node *next = list->next;
        node_delete(vm, list);
        list = next;
    }
}

static uintptr_t default_space(struct kmm *mm)
{
    uint64_t bytes = mm->vm_size ? mm->vm_size : 2 * (uint64_t)mm->span_bytes;
    if (!mm->vm_size && bytes < (1ull << 30))
        bytes = 1ull << 30;
    if (bytes > (1ull << 46))
        bytes = 1ull << 46;
    return (uintptr_t)(bytes & ~(uint64_t)(mm->page_size - 1));
}

/* The default budget of mappings, from room, the mappings the process may
 * still make when the space is created (0: no limit): all but an eighth,
 * which stays the rest of the program's on top of what it holds already.
 * On Linux's default vm.max_map_count (65530) and a process holding a few
 * hundred mappings, that is about 57000: some 28000 live one-page areas (two
 * mappings each), and over 8000 mappings the program may still make. Half
 * the limit, the former default, failed lib/test_vmalloc's full_fit (16384
 * live areas) two mappings short. */
static size_t default_max_mappings(size_t room)
{
    return room ? room - room / 8 : SIZE_MAX;
}

static struct kmm_vm *vm_create(struct kmm *mm)
{
    const struct kmm_platform *pf = mm->pf;
    size_t bytes = default_space(mm);
    if (bytes < 2 * mm->page_size)
        return NULL;
    struct kmm_vm *vm = kmm__meta_alloc(mm, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->mm = mm;
    vm->bytes = bytes;
    /* aligned like the largest alignment asked of it is likely to be, so
     * that aligned requests find room from the very start */
    size_t align = (size_t)1 << 30;
    while (align > bytes)
        align >>= 1;
    if (align < mm->page_size)
        align = mm->page_size;
    /* asked before the reservation, which the budget counts itself */
    size_t room = pf->vm_map_limit ? pf->vm_map_limit(mm->ctx) : 0;
    void *base = pf->vm_reserve(mm->ctx, bytes, align);
    if (!base)
        goto fail;
    vm->start = (uintptr_t)base;
    vm->first_page = vm->start >> mm->page_shift;
    vm->end_page = vm->first_page + (bytes >> mm->page_shift);
    vm->strict = mm->vm_flags & KMM_VMALLOC_STRICT;
    vm->spread = mm->vm_flags & KMM_VMALLOC_SPREAD;
    vm->lazy_max = KMM_VMALLOC_LAZY_PAGES;
    vm->max_mappings = mm->vm_max_mappings ? mm->vm_max_mappings : default_max_mappings(room);
    struct vm_node *all = node_new(vm);
    if (!all)
        goto fail_reserved;
    all->first = vm->first_page;
    all->pages = vm->end_page - vm->first_page;
    all->state = VM_FREE;
    vm->root = kmm__vt_insert(NULL, all);
    vm->free_ranges = 1;
    vm->free_pages = all->pages;
    vm->mappings = 1;   /* the reservation itself */
    pf->lock_init(&vm->lock);
    return vm;
fail_reserved:
    pf->vm_unreserve(mm->ctx, base, bytes);
fail:
    kmm__meta_free(mm, vm, sizeof(*vm));
    return NULL;
}

static void vm_delete(struct kmm *mm, struct kmm_vm *vm)
{
    mm->pf->vm_unreserve(mm->ctx, (void *)vm->start, vm->bytes);
    mm->pf->lock_fini(&vm->lock);
    kmm__meta_free(mm, vm, sizeof(*vm));
}

static bool platform_has_vm(const struct kmm_platform *pf)
{
    return pf->vm_reserve && pf->vm_unreserve && pf->vm_map && pf->vm_unmap;
}

/* mm's vmalloc space, made on first use; NULL (refused as from fn) when
 * the platform has none or it cannot be made. */
static struct kmm_vm *vm_get(struct kmm *mm, const char *fn)
{
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (KMM_LIKELY(vm != NULL))
        return vm;
    if (!platform_has_vm(mm->pf)) {
        kmm__refuse(mm, KMM_ENOMEM, fn, "the platform has no virtual memory hooks (vm_reserve, vm_map...)");
        return NULL;
    }
    struct kmm_vm *made = vm_create(mm);
    if (!made) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    struct kmm_vm *expected = NULL;
    if (__atomic_compare_exchange_n(&mm->vm, &expected, made, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return made;
    /* another thread made one first: ours never held an area */
    struct vm_node *all = made->root;
    node_delete(made, all);
    vm_delete(mm, made);
    return expected;
}

static inline struct kmm_vm *vm_of(struct kmm *mm) { return __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE); }

bool kmm__vm_owns(struct kmm *mm, const void *p)
{
    struct kmm_vm *vm = vm_of(mm);
    return vm && (uintptr_t)p - vm->start < vm->bytes;
}

bool kmm_is_vmalloc_addr(struct kmm *mm, const void *addr)
{
    mm_live(mm, "kmm_is_vmalloc_addr");
    return kmm__vm_owns(mm, addr);
}

static inline void *area_addr(const struct kmm_vm *vm, const struct vm_node *n)
{
    return (void *)(n->first << vm->mm->page_shift);
}

/* ---- carving and giving back ranges (vm->lock held) -------------------------------- */

/* Carves pages at page number at out of free range n; spare[] holds two
 * nodes, those used are set to NULL. Returns the new area, VM_BUSY. */
static struct vm_node *carve(struct kmm_vm *vm, struct vm_node *n, uintptr_t at, size_t pages,
                             struct vm_node *spare[2])
{
    uintptr_t end = vm_node_end(n);
    struct vm_node *area;
    vm->free_ranges--;
    vm->free_pages -= n->pages;
    if (at > n->first) {   /* the front stays free in n */
        n->pages = at - n->first;
        vm->free_ranges++;
        vm->free_pages += n->pages;
        kmm__vt_update(vm->root, n->first);
        area = spare[0];
        spare[0] = NULL;
        area->first = at;
        area->pages = pages;
        area->state = VM_BUSY;
        vm->root = kmm__vt_insert(vm->root, area);
    } else {
        area = n;
        area->pages = pages;
        area->state = VM_BUSY;
        kmm__vt_update(vm->root, area->first);
    }
    if (at + pages < end) {
        struct vm_node *tail = spare[1];
        spare[1] = NULL;
        tail->first = at + pages;
        tail->pages = end - (at + pages);
        tail->state = VM_FREE;
        vm->root = kmm__vt_insert(vm->root, tail);
        vm->free_ranges++;
        vm->free_pages += tail->pages;
    }
    return area;
}

/* Makes area n (its run array given back) a free range and merges it with
 * free neighbours; nodes that drop out of the tree go on *garbage. */
static void give_back(struct kmm_vm *vm, struct vm_node *n, struct vm_node **garbage)
{
    n->state = VM_FREE;
    n->mapped = n->size = 0;
    n->nr_runs = 0;
    vm->free_ranges++;
    vm->free_pages += n->pages;
    struct vm_node *prev = n->first > vm->first_page ? kmm__vt_find(vm->root, n->first - 1) : NULL;
    if (prev && prev->state == VM_FREE) {
        prev->pages += n->pages;
        vm->root = kmm__vt_remove(vm->root, n->first);
        n->next = *garbage;
        *garbage = n;
        n = prev;
        vm->free_ranges--;
    }
    struct vm_node *next = vm_node_end(n) < vm->end_page ? kmm__vt_find(vm->root, vm_node_end(n)) : NULL;
    if (next && next->state == VM_FREE) {
        n->pages += next->pages;
        vm->root = kmm__vt_remove(vm->root, next->first);
        next->next = *garbage;
        *garbage = next;
        vm->free_ranges--;
    }
    kmm__vt_update(vm->root, n->first);
}

static void *vmalloc_common(struct kmm *mm, size_t size, size_t align, unsigned flags, const char *fn,
                            const void *caller);

/* Area n's range loses its last pages pages (vm->lock held): they join the
 * free range after it, or become one in *spare (then set to NULL). */
static void trim_range(struct kmm_vm *vm, struct vm_node *n, size_t pages, struct vm_node **spare)
{
    n->pages -= pages;
    kmm__vt_update(vm->root, n->first);
    uintptr_t at = vm_node_end(n);
    struct vm_node *next = at + pages < vm->end_page ? kmm__vt_find(vm->root, at + pages) : NULL;
    if (next && next->state == VM_FREE) {
        next->first = at;   /* still after n and before the node after it: the order holds */
        next->pages += pages;
        kmm__vt_update(vm->root, next->first);
    } else {
        struct vm_node *f = *spare;
        *spare = NULL;
        f->first = at;
        f->pages = pages;
        f->state = VM_FREE;
        vm->root = kmm__vt_insert(vm->root, f);
        vm->free_ranges++;
    }
    vm->free_pages += pages;
}

/* ---- pages and runs ------------------------------------------------------------------ */

/* Appends frames [phys, phys + npages pages) as the area's pages from
 * first on, joining the last run when they continue it. */
static int add_run(struct kmm_vm *vm, struct vm_node *n, kmm_phys_t phys, size_t first)
{
    if (n->nr_runs) {
        struct vm_run *last = &n->runs[n->nr_runs - 1];
        if (last->phys + ((kmm_phys_t)(first - last->first) << vm->mm->page_shift) == phys)
            return 0;
    }
    if (n->nr_runs == n->cap_runs) {
        /* An area on memory fragmented to single pages has a run per page.
         * Without the platform's meta_alloc, metadata memory is pages of
         * the page allocator, and then an array of more than a page may
         * find no contiguous pages: the array is a vmalloc area itself
         * (pages one by one; its own few runs fit inline, so this recursion
         * stops at once). With meta_alloc that would put it in the direct
         * map, so a failure is a failure. */
        size_t cap = n->cap_runs * 4;
        struct vm_run *runs = kmm__meta_obj_alloc(vm->mm, cap * sizeof(*runs));
        if (!runs && !vm->mm->pf->meta_alloc)
            runs = vmalloc_common(vm->mm, cap * sizeof(*runs), 0, 0, RUN_ARRAY_TAG, __builtin_return_address(0));
        if (!runs)
            return -KMM_ENOMEM;
        __builtin_memcpy(runs, n->runs, n->nr_runs * sizeof(*runs));
        run_array_free(vm, n->runs, n->cap_runs, n->inline_runs);
        n->runs = runs;
        n->cap_runs = cap;
    }
    n->runs[n->nr_runs++] = (struct vm_run){ .phys = phys, .first = first };
    return 0;
}

static inline size_t run_end(const struct vm_node *n, size_t i)
{
    return i + 1 < n->nr_runs ? n->runs[i + 1].first : n->mapped;
}

/* Frees the page allocations that back the area's pages [from, mapped),
 * shrinking one that straddles from. */
static void free_pages_from(struct kmm_vm *vm, struct vm_node *n, size_t from)
{
    struct kmm *mm = vm->mm;
    for (size_t i = 0; i < n->nr_runs; i++) {
        size_t page = n->runs[i].first, end = run_end(n, i);
        while (page < end) {
            void *v = kmm_phys_to_virt(mm, n->runs[i].phys + ((kmm_phys_t)(page - n->runs[i].first) << mm->page_shift));
            size_t len = kmm__pages_size(mm, OWNER_VMALLOC, v);
            if (!len)
                kmm__fatal_page(mm, "kmm_vfree", "a vmalloc area's page is not a vmalloc allocation (metadata broken):", v);
            if (page >= from)
                kmm__free_pages_as(mm, OWNER_VMALLOC, "kmm_vfree", v, true);
            else if (page + len > from)
                kmm__pages_shrink(mm, OWNER_VMALLOC, v, from - page);
            page += len;
        }
    }
}

/* Drops the runs beyond page keep (the pages are freed already). */
static void truncate_runs(struct vm_node *n, size_t keep)
{
    while (n->nr_runs && n->runs[n->nr_runs - 1].first >= keep)
        n->nr_runs--;
}

/* Takes pages [from, to) of the area from the page allocator, in the
 * largest blocks that are free: an exact allocation of all that is left,
 * else the largest power of two below the size that failed. A failure at
 * an order means no free block that large, so the orders tried only fall:
 * about one attempt per block taken. */
static int take_pages(struct kmm_vm *vm, struct vm_node *n, size_t from, size_t to, unsigned flags)
{
    struct kmm *mm = vm->mm;
    size_t cap = (size_t)1 << KMM_MAX_ORDER;
    size_t page = from;
    bool purged = false;
    while (page < to) {
        size_t want = to - page < cap ? to - page : cap;
        if (kmm__fault(mm, KMM_FAULT_PAGES))
            goto fail;
        /* zeroed pages not populated: a large run by dropping its frames
         * (they come back zero at first touch, as fresh mmap memory does)
         * rather than by writing every page through the direct map */
        bool drop = (flags & (KMM_ZERO | KMM_NOPOPULATE)) == (KMM_ZERO | KMM_NOPOPULATE) &&
                    (want << mm->page_shift) >= VM_DROP_BYTES && mm->pf->frames_zero;
        void *v = kmm_alloc_pages_exact(mm, want << mm->page_shift,
                                        flags & (KMM_AREA_MASK | (drop ? 0 : KMM_ZERO)));
        if (v && drop && pf_frames_zero(mm, kmm_virt_to_phys(mm, v), want << mm->page_shift) != 0)
            __builtin_memset(v, 0, want << mm->page_shift);
        if (!v && want == 1 && !purged) {
            /* the pages of lazily freed areas are no one's: take them back
             * before failing, and look for large blocks again */
            purged = true;
            if (kmm_vmalloc_purge(mm)) {
                cap = (size_t)1 << KMM_MAX_ORDER;
                continue;
            }
        }
        if (!v) {
            if (want == 1)
                goto fail;
            cap = (size_t)1 << (ceil_log2(want) - 1);
            continue;
        }
        kmm__pages_own(mm, v, OWNER_VMALLOC);
        size_t before = n->nr_runs;
        if (add_run(vm, n, kmm_virt_to_phys(mm, v), page) != 0) {
            kmm__free_pages_as(mm, OWNER_VMALLOC, "kmm_vmalloc", v, true);
            n->nr_runs = before;
            goto fail;
        }
        page += want;
        n->mapped = page;   /* so that free_pages_from sees them */
    }
    return 0;
fail:
    free_pages_from(vm, n, from);
    truncate_runs(n, from);
    n->mapped = from;
    return -KMM_ENOMEM;
}

/* ---- mapping ----------------------------------------------------------------------------- */

static int map_call(struct kmm_vm *vm, uintptr_t va, kmm_phys_t phys, size_t len, unsigned prot)
{
    struct kmm *mm = vm->mm;
    if (kmm__fault(mm, KMM_FAULT_MAP))
        return -KMM_ENOMEM;
    add_relaxed(&vm->map_calls, 1);
    return mm->pf->vm_map(mm->ctx, (void *)va, phys, len, prot);
}

/* Unmapping must work: a range left mapped would keep pages reachable that
 * go back to the page allocator. */
static void unmap_call(struct kmm_vm *vm, uintptr_t va, size_t len)
{
    struct kmm *mm = vm->mm;
    add_relaxed(&vm->unmap_calls, 1);
    if (mm->pf->vm_unmap(mm->ctx, (void *)va, len) != 0)
        kmm__fatal_page(mm, "kmm_vmalloc", "the platform could not unmap a vmalloc range at", (void *)va);
}

static unsigned map_prot(const struct vm_node *n)
{
    return n->prot | (n->nopopulate ? KMM_MAP_NOPOPULATE : 0);
}

/* Maps the runs of area n from run index i on. */
static int map_runs(struct kmm_vm *vm, struct vm_node *n, size_t i)
{
    unsigned shift = vm->mm->page_shift;
    for (; i < n->nr_runs; i++) {
        uintptr_t va = (n->first + n->runs[i].first) << shift;
        size_t len = (run_end(n, i) - n->runs[i].first) << shift;
        int rc = map_call(vm, va, n->runs[i].phys, len, map_prot(n));
        if (rc)
            return rc;
    }
    return 0;
}

/* Counts delta more mappings against the limit (purging lazy areas to make
 * room); false, reported, when they do not fit. */
static bool charge_mappings(struct kmm_vm *vm, size_t delta, const char *fn)
{
    for (int attempt = 0;; attempt++) {
        struct kmm *mm = vm->mm;
        kmm_lock(mm, &vm->lock);
        bool fits = vm->mappings + delta <= vm->max_mappings && vm->mappings + delta >= vm->mappings;
        bool lazy = vm->lazy_areas != 0;
        if (fits)
            vm->mappings += delta;
        else if (attempt || !lazy)
            vm->refused++;
        kmm_unlock(mm, &vm->lock);
        if (fits)
            return true;
        if (attempt || !lazy) {
            struct kmm_msg m = { .len = 0 };
            kmm__msg_str(&m, "kmm: ");
            kmm__msg_str(&m, fn);
            kmm__msg_str(&m, ": refused: ");
            kmm__msg_dec(&m, delta);
            kmm__msg_str(&m, " more mappings would pass vmalloc's limit of ");
            kmm__msg_dec(&m, vm->max_mappings);
            kmm__msg_str(&m, " (config.vmalloc_max_mappings; by default seven eighths of the mappings the process could still make)");
            kmm__report(mm, &m);
            if (mm->pf->error)
                mm->pf->error(KMM_ENOMEM);
            return false;
        }
        kmm_vmalloc_purge(mm);
    }
}

static void uncharge_mappings(struct kmm_vm *vm, size_t delta)
{
    kmm_lock(vm->mm, &vm->lock);
    vm->mappings -= delta;
    kmm_unlock(vm->mm, &vm->lock);
}

/* ---- areas --------------------------------------------------------------------------------- */

/* A new VM_BUSY area of pages (mapped + guard) at a multiple of align pages;
 * NULL when the space has no such range (after a purge of lazy areas). */
static struct vm_node *area_new(struct kmm_vm *vm, size_t pages, size_t align)
{
    struct kmm *mm = vm->mm;
    struct vm_node *spare[2] = { node_new(vm), node_new(vm) };
    struct vm_node *area = NULL;
    if (spare[0] && spare[1]) {
        for (int attempt = 0; attempt < 2 && !area; attempt++) {
            kmm_lock(mm, &vm->lock);
            uintptr_t at;
            /* spread: next fit, wrapping round to the lowest fit */
            struct vm_node *n = vm->spread ? kmm__vt_lowest_fit(vm->root, pages, align, vm->cursor, &at) : NULL;
            if (!n)
                n = kmm__vt_lowest_fit(vm->root, pages, align, 0, &at);
            if (n) {
                area = carve(vm, n, at, pages, spare);
                vm->cursor = at + pages;
            }
            bool lazy = vm->lazy_areas != 0;
            kmm_unlock(mm, &vm->lock);
            if (area || !lazy)
                break;
            kmm_vmalloc_purge(mm);
        }
    }
    node_delete(vm, spare[0]);
    node_delete(vm, spare[1]);
    return area;
}

/* Gives a VM_BUSY area's addresses back (its pages are gone, nothing mapped). */
static void area_release(struct kmm_vm *vm, struct vm_node *n)
{
    struct vm_node *garbage = NULL;
    runs_release(vm, n);
    kmm_lock(vm->mm, &vm->lock);
    give_back(vm, n, &garbage);
    kmm_unlock(vm->mm, &vm->lock);
    nodes_delete(vm, garbage);
}

static void area_publish(struct kmm_vm *vm, struct vm_node *n, enum vm_state state)
{
    kmm_lock(vm->mm, &vm->lock);
    n->state = (uint8_t)state;
    if (state == VM_VMALLOC) {
        vm->areas++;
        vm->pages += n->mapped;
        vm->allocs++;
    } else {
        vm->vmap_areas++;
        vm->vmap_pages += n->mapped;
    }
    kmm_unlock(vm->mm, &vm->lock);
}

static inline void va_unpoison(struct kmm_vm *vm, struct vm_node *n, size_t from)
{
    (void)vm, (void)n, (void)from;
#if KMM_ASAN
    __asan_unpoison_memory_region((char *)area_addr(vm, n) + (from << vm->mm->page_shift),
                                  (n->mapped - from) << vm->mm->page_shift);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_UNDEFINED((char *)area_addr(vm, n) + (from << vm->mm->page_shift),
                                (n->mapped - from) << vm->mm->page_shift);
#endif
}
static inline void va_poison(struct kmm_vm *vm, struct vm_node *n, size_t from)
{
    (void)vm, (void)n, (void)from;
#if KMM_ASAN
    __asan_poison_memory_region((char *)area_addr(vm, n) + (from << vm->mm->page_shift),
                                (n->mapped - from) << vm->mm->page_shift);
#endif
#if KMM_VALGRIND
    VALGRIND_MAKE_MEM_NOACCESS((char *)area_addr(vm, n) + (from << vm->mm->page_shift),
                               (n->mapped - from) << vm->mm->page_shift);
#endif
}

static bool area_shrink(struct kmm_vm *vm, struct vm_node *n, size_t keep);

/* Whether lazily freed area n can serve pages at a multiple of align pages
 * from the areas area_mask accepts: as it is, or after its tail is cut
 * (at most a quarter of it, so that little is unmapped and freed again). */
static inline bool lazy_fits(const struct vm_node *n, size_t pages, size_t align, uint8_t area_mask)
{
    return n->mapped >= pages && n->mapped - pages <= n->mapped / 4 && !(n->area_mask & ~area_mask) &&
           !(n->first & (align - 1));
}

/* A cut (the tail of a larger lazily freed area unmapped and its pages
 * freed) is allowed only once the lazy areas, with this one, pass
 * VM_CUT_FROM quarters of a purge batch. Below that there is room to keep
 * another size mapped: a fresh area is mapped and, once freed, serves its
 * own size, while a cut would shrink a cached size for good (the next
 * request of that size maps afresh) and cost an unmap call and page frees
 * now. Measured on lib/test_vmalloc's random_size (1..100 pages): with a
 * cut always allowed, 0.6 unmap calls per operation in steady state (the
 * cached areas shrink towards the small sizes, and large requests map
 * again); with the gate, after the first hundred sizes, none (see
 * docs/decisions.md). */
#define VM_CUT_FROM 3

/* A lazily freed area that fits (lazy_fits), made live again still mapped
 * to its pages, its tail beyond pages cut; NULL if none. Looks at the list
 * of exactly pages pages, then (when a cut is allowed) at the lists of
 * slightly larger ones, and for more than VM_WARM_PAGES pages at the best
 * fit among the large ones (a list of at most lazy_max / VM_WARM_PAGES
 * areas). Strict mode has no lazy areas. */
static struct vm_node *reuse_lazy(struct kmm_vm *vm, size_t pages, size_t align, uint8_t area_mask, size_t size,
                                  const char *tag, const void *caller)
{
    if (!load_relaxed(&vm->lazy_areas))
        return NULL;
    struct kmm *mm = vm->mm;
    struct vm_node **link = NULL;
    kmm_lock(mm, &vm->lock);
    /* a cut only when the lazy areas near a purge (see VM_CUT_FROM) */
    bool cut_ok = vm->lazy_pages + pages > vm->lazy_max / 4 * VM_CUT_FROM;
    size_t most = cut_ok ? pages + pages / 3 : pages;
    for (size_t n = pages; n <= VM_WARM_PAGES && n <= most; n++) {
        if (vm->lazy[n] && lazy_fits(vm->lazy[n], pages, align, area_mask)) {
            link = &vm->lazy[n];
            break;
        }
    }
    if (!link && most > VM_WARM_PAGES) {
        for (struct vm_node **l = &vm->lazy[0]; *l; l = &(*l)->next)
            if (lazy_fits(*l, pages, align, area_mask) && (cut_ok || (*l)->mapped == pages) &&
                (!link || (*l)->mapped < (*link)->mapped))
                link = l;
    }
    struct vm_node *n = link ? *link : NULL;
    if (n) {
        store_relaxed(link, n->next);
        store_relaxed(&vm->lazy_areas, vm->lazy_areas - 1);
        vm->lazy_pages -= n->mapped;
        vm->reused++;
        vm->allocs++;
        vm->areas++;
        vm->pages += n->mapped;
        n->size = size;
        n->tag = tag;
        n->caller = caller;
        n->state = n->mapped == pages ? VM_VMALLOC : VM_BUSY;
    }
    kmm_unlock(mm, &vm->lock);
    if (n && n->mapped != pages) {
        /* the tail is unmapped, its pages freed, the guard moves up; if
         * that cannot be done (no metadata node), the area goes back */
        bool cut = area_shrink(vm, n, pages);
        kmm_lock(mm, &vm->lock);
        n->state = cut ? VM_VMALLOC : VM_LAZY;
        if (!cut) {
            struct vm_node **list = &vm->lazy[n->mapped <= VM_WARM_PAGES ? n->mapped : 0];
            n->next = *list;
            store_relaxed(list, n);
            store_relaxed(&vm->lazy_areas, vm->lazy_areas + 1);
            vm->lazy_pages += n->mapped;
            vm->reused--;
            vm->allocs--;
            vm->areas--;
            vm->pages -= n->mapped;
        }
        kmm_unlock(mm, &vm->lock);
        if (!cut)
            return NULL;
    }
    return n;
}

/* An unmapped range faults anyway: ASan's poison on it goes, so that free
 * ranges never carry any (and the space needs no unpoisoning at the end). */
static inline void va_forget(struct kmm_vm *vm, struct vm_node *n)
{
    (void)vm, (void)n;
#if KMM_ASAN
    __asan_unpoison_memory_region(area_addr(vm, n), n->mapped << vm->mm->page_shift);
#endif
}

static void *vmalloc_common(struct kmm *mm, size_t size, size_t align, unsigned flags, const char *fn,
                            const void *caller)
{
    mm_live(mm, fn);
    if (size == 0 || (align & (align - 1)) || (flags & ~(unsigned)(KMM_AREA_MASK | KMM_ZERO | KMM_NOPOPULATE))) {
        kmm__refuse(mm, KMM_EINVAL, fn,
                    size == 0 ? "size 0" : (align & (align - 1)) ? "alignment not a power of two" : "unknown flags");
        return NULL;
    }
    struct kmm_vm *vm = vm_get(mm, fn);
    if (!vm)
        return NULL;
    kmm__release_tick(mm);
    size_t pages = size / mm->page_size + ((size & (mm->page_size - 1)) != 0);
    size_t align_pages = align > mm->page_size ? align >> mm->page_shift : 1;
    if (size > vm->bytes || align > vm->bytes) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    uint8_t area_mask = (uint8_t)(flags & KMM_AREA_MASK ? flags & KMM_AREA_MASK : KMM_AREA_ANY);
    struct vm_node *n = reuse_lazy(vm, pages, align_pages, area_mask, size, fn, caller);
    if (n) {
        va_unpoison(vm, n, 0);
        if (flags & KMM_ZERO)
            __builtin_memset(area_addr(vm, n), 0, n->mapped << mm->page_shift);
        return area_addr(vm, n);
    }
    n = area_new(vm, pages + 1, align_pages);
    if (!n) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    n->size = size;
    n->tag = fn;
    n->caller = caller;
    n->prot = KMM_PROT_READ | KMM_PROT_WRITE;
    n->nopopulate = flags & KMM_NOPOPULATE;
    n->area_mask = area_mask;
    if (take_pages(vm, n, 0, pages, flags) != 0)
        goto fail_area;
    if (!charge_mappings(vm, n->nr_runs + 1, fn))
        goto fail_pages;
    if (map_runs(vm, n, 0) != 0)
        goto fail_mapped;
    va_unpoison(vm, n, 0);
    area_publish(vm, n, VM_VMALLOC);
    return area_addr(vm, n);

fail_mapped:
    unmap_call(vm, (uintptr_t)area_addr(vm, n), n->mapped << mm->page_shift);
    uncharge_mappings(vm, n->nr_runs + 1);
fail_pages:
    free_pages_from(vm, n, 0);
fail_area:
    area_release(vm, n);
    kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

void *kmm_vmalloc(struct kmm *mm, size_t size, unsigned flags)
{
    return vmalloc_common(mm, size, 0, flags, "kmm_vmalloc", __builtin_return_address(0));
}

void *kmm_vmalloc_aligned(struct kmm *mm, size_t size, size_t align, unsigned flags)
{
    return vmalloc_common(mm, size, align, flags, "kmm_vmalloc_aligned", __builtin_return_address(0));
}

/* The live area of kind want (VM_VMALLOC or VM_VMAP) starting at p, with
 * vm->lock held; anything else is reported as from fn (the lock released
 * first) and aborts. */
static struct vm_node *live_area_locked(struct kmm_vm *vm, const void *p, enum vm_state want, const char *fn)
{
    struct kmm *mm = vm->mm;
    uintptr_t page = (uintptr_t)p >> mm->page_shift;
    struct vm_node *n = kmm__vt_find(vm->root, page);
    const char *why = NULL;
    if (!n || n->state == VM_FREE || n->state == VM_BUSY)
        why = "not allocated (no live vmalloc area here):";
    else if (n->state == VM_ORPHAN)
        why = "area another thread was making or freeing at fork (kept by the child for good):";
    else if (n->state == VM_LAZY)
        why = "double free, or use after free (the vmalloc area is freed already):";
    else if (page >= n->first + n->mapped)
        why = "pointer into a guard page:";
    else if ((uintptr_t)p != (uintptr_t)area_addr(vm, n))
        why = "pointer into the middle of a vmalloc area:";
    else if (n->state != want)
        why = n->state == VM_VMAP ? "area made by kmm_vmap (unmap it with kmm_vunmap):"
                                  : "area made by kmm_vmalloc (free it with kmm_vfree):";
    if (why) {
        kmm_unlock(mm, &vm->lock);
        kmm__fatal_page(mm, fn, why, p);
    }
    return n;
}

/* Takes the live area of kind want at p out of the live counts for a free:
 * now VM_BUSY (the caller unmaps it), or VM_LAZY (on its lazy list; then
 * *purge_due says whether the lazy areas call for a purge). */
static struct vm_node *area_claim(struct kmm_vm *vm, const void *p, enum vm_state want, enum vm_state to,
                                  const char *fn, bool *purge_due)
{
    kmm_lock(vm->mm, &vm->lock);
    struct vm_node *n = live_area_locked(vm, p, want, fn);
    n->state = (uint8_t)to;
    if (want == VM_VMALLOC) {
        vm->areas--;
        vm->pages -= n->mapped;
        vm->frees++;
    } else {
        vm->vmap_areas--;
        vm->vmap_pages -= n->mapped;
    }
    /* poisoned under the lock: once on a lazy list another thread may take
     * it back at once */
    va_poison(vm, n, 0);
    if (to == VM_LAZY) {
        struct vm_node **list = &vm->lazy[n->mapped <= VM_WARM_PAGES ? n->mapped : 0];
        n->next = *list;
        store_relaxed(list, n);
        store_relaxed(&vm->lazy_areas, vm->lazy_areas + 1);
        vm->lazy_pages += n->mapped;
        *purge_due = vm->lazy_pages >= vm->lazy_max;
    }
    kmm_unlock(vm->mm, &vm->lock);
    return n;
}

/* Unmaps a VM_BUSY area, frees its pages if it owns them, gives it back. */
static void area_destroy(struct kmm_vm *vm, struct vm_node *n, bool owns_pages)
{
    unmap_call(vm, (uintptr_t)area_addr(vm, n), n->mapped << vm->mm->page_shift);
    va_forget(vm, n);
    if (owns_pages)
        free_pages_from(vm, n, 0);
    uncharge_mappings(vm, n->nr_runs + 1);
    area_release(vm, n);
}

/* kmm_vfree that unmaps before it returns. */
static void vfree_now(struct kmm_vm *vm, void *p, const char *fn)
{
    area_destroy(vm, area_claim(vm, p, VM_VMALLOC, VM_BUSY, fn, NULL), true);
}

void kmm__vfree_as(struct kmm *mm, void *p, const char *fn)
{
    mm_live(mm, fn);
    struct kmm_vm *vm = vm_of(mm);
    if (!vm || (uintptr_t)p - vm->start >= vm->bytes)
        kmm__fatal_page(mm, fn,
                        kmm_virt_to_phys(mm, p) != KMM_PHYS_NONE
                            ? "not a kmm_vmalloc area (direct-map memory: kmm_malloc or page allocations):"
                            : "pointer not from kmm (not in this memory system):",
                        p);
    if (vm->strict) {
        vfree_now(vm, p, fn);
        return;
    }
    bool purge_due;
    area_claim(vm, p, VM_VMALLOC, VM_LAZY, fn, &purge_due);
    if (purge_due)
        kmm_vmalloc_purge(mm);
}

void kmm_vfree(struct kmm *mm, void *addr)
{
    mm_live(mm, "kmm_vfree");
    if (addr)
        kmm__vfree_as(mm, addr, "kmm_vfree");
}

/* Sorts a list of nodes by address (merge sort: purges are O(n log n)). */
static struct vm_node *sort_by_address(struct vm_node *list, size_t n)
{
    if (n < 2)
        return list;
    struct vm_node *mid = list;
    for (size_t i = 1; i < n / 2; i++)
        mid = mid->next;
    struct vm_node *b = mid->next;
    mid->next = NULL;
    struct vm_node *a = sort_by_address(list, n / 2);
    b = sort_by_address(b, n - n / 2);
    struct vm_node head, *tail = &head;
    while (a && b) {
        struct vm_node **smaller = a->first < b->first ? &a : &b;
        tail->next = *smaller;
        tail = *smaller;
        *smaller = (*smaller)->next;
    }
    tail->next = a ? a : b;
    return head.next;
}

size_t kmm_vmalloc_purge(struct kmm *mm)
{
    mm_live(mm, "kmm_vmalloc_purge");
    struct kmm_vm *vm = vm_of(mm);
    if (!vm)
        return 0;
    kmm_lock(mm, &vm->lock);
    struct vm_node *list = NULL;
    size_t count = vm->lazy_areas, pages = vm->lazy_pages;
    for (size_t i = 0; i <= VM_WARM_PAGES; i++) {
        while (vm->lazy[i]) {
            struct vm_node *n = vm->lazy[i];
            store_relaxed(&vm->lazy[i], n->next);
            n->state = VM_BUSY;
            n->next = list;
            list = n;
        }
    }
    store_relaxed(&vm->lazy_areas, 0);
    vm->lazy_pages = 0;
    if (list)
        vm->purges++;
    kmm_unlock(mm, &vm->lock);
    if (!list)
        return 0;

    /* one unmap call per run of adjacent areas (guard pages included:
     * they are unmapped already, and no one else can map into them) */
    list = sort_by_address(list, count);
    for (struct vm_node *n = list; n;) {
        uintptr_t from = n->first, to = vm_node_end(n);
        struct vm_node *last = n;
        while (last->next && last->next->first == to) {
            last = last->next;
            to = vm_node_end(last);
        }
        unmap_call(vm, from << mm->page_shift, (to - from) << mm->page_shift);
        n = last->next;
    }
    size_t mappings = 0;
    for (struct vm_node *n = list; n; n = n->next) {
        va_forget(vm, n);
        free_pages_from(vm, n, 0);
        mappings += n->nr_runs + 1;
        runs_release(vm, n);
    }
    struct vm_node *garbage = NULL;
    kmm_lock(mm, &vm->lock);
    vm->mappings -= mappings;
    for (struct vm_node *n = list, *next; n; n = next) {
        next = n->next;
        give_back(vm, n, &garbage);
    }
    kmm_unlock(mm, &vm->lock);
    nodes_delete(vm, garbage);
    return pages;
}

/* ---- kmm_vmap -------------------------------------------------------------------------------- */

void *kmm_vmap(struct kmm *mm, const kmm_phys_t *pages, size_t npages, unsigned prot)
{
    const char *fn = "kmm_vmap";
    mm_live(mm, fn);
    if (!pages || npages == 0 || !(prot & KMM_PROT_READ) || (prot & ~(KMM_PROT_READ | KMM_PROT_WRITE))) {
        kmm__refuse(mm, KMM_EINVAL, fn, !pages || !npages ? "no pages" : "prot must be KMM_PROT_READ, optionally | KMM_PROT_WRITE");
        return NULL;
    }
    for (size_t i = 0; i < npages; i++) {
        if ((pages[i] & (mm->page_size - 1)) || !kmm_phys_to_virt(mm, pages[i])) {
            kmm__refuse(mm, KMM_EINVAL, fn, "a page is not a page-aligned frame of this memory system");
            return NULL;
        }
        /* secret memory is mapped at its one address only, and code is
         * never writable: their frames are nobody else's to map */
        uint8_t kind;
        kmm_page_kinds(mm, pages[i], 1, &kind);
        kind &= (uint8_t)~KMM_PAGE_UNMAPPED_BIT;
        if (kind == KMM_PAGE_SECRET || kind == KMM_PAGE_EXECMEM) {
            kmm__refuse(mm, KMM_EINVAL, fn,
                        kind == KMM_PAGE_SECRET ? "a page is a frame of secret memory" : "a page is a frame of execmem");
            return NULL;
        }
    }
    struct kmm_vm *vm = vm_get(mm, fn);
    if (!vm)
        return NULL;
    if (npages >= vm->bytes >> mm->page_shift) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    struct vm_node *n = area_new(vm, npages + 1, 1);
    if (!n) {
        kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
        return NULL;
    }
    n->size = npages << mm->page_shift;
    n->tag = fn;
    n->caller = __builtin_return_address(0);
    n->prot = (uint8_t)prot;
    for (size_t i = 0; i < npages; i++) {
        n->mapped = i + 1;
        if (add_run(vm, n, pages[i], i) != 0)
            goto fail_area;
    }
    if (!charge_mappings(vm, n->nr_runs + 1, fn))
        goto fail_area;
    if (map_runs(vm, n, 0) != 0) {
        unmap_call(vm, (uintptr_t)area_addr(vm, n), n->mapped << mm->page_shift);
        uncharge_mappings(vm, n->nr_runs + 1);
        goto fail_area;
    }
    va_unpoison(vm, n, 0);
    area_publish(vm, n, VM_VMAP);
    return area_addr(vm, n);
fail_area:
    area_release(vm, n);
    kmm__refuse(mm, KMM_ENOMEM, fn, NULL);
    return NULL;
}

void kmm_vunmap(struct kmm *mm, void *addr)
{
    mm_live(mm, "kmm_vunmap");
    if (!addr)
        return;
    struct kmm_vm *vm = vm_of(mm);
    if (!vm || (uintptr_t)addr - vm->start >= vm->bytes)
        kmm__fatal_page(mm, "kmm_vunmap", "pointer not from kmm_vmap (not in the vmalloc space):", addr);
    area_destroy(vm, area_claim(vm, addr, VM_VMAP, VM_BUSY, "kmm_vunmap", NULL), false);
}

/* ---- lookups ------------------------------------------------------------------------------------ */

kmm_phys_t kmm_vmalloc_to_phys(struct kmm *mm, const void *addr)
{
    mm_live(mm, "kmm_vmalloc_to_phys");
    struct kmm_vm *vm = vm_of(mm);
    if (!vm || (uintptr_t)addr - vm->start >= vm->bytes)
        return KMM_PHYS_NONE;
    uintptr_t page = (uintptr_t)addr >> mm->page_shift;
    kmm_phys_t phys = KMM_PHYS_NONE;
    kmm_lock(mm, &vm->lock);
    struct vm_node *n = kmm__vt_find(vm->root, page);
    if (n && (n->state == VM_VMALLOC || n->state == VM_VMAP) && page - n->first < n->mapped) {
        size_t index = page - n->first, lo = 0, hi = n->nr_runs;
        while (hi - lo > 1) {   /* the last run starting at or before index */
            size_t mid = (lo + hi) / 2;
            if (n->runs[mid].first <= index)
                lo = mid;
            else
                hi = mid;
        }
        phys = n->runs[lo].phys + ((kmm_phys_t)(index - n->runs[lo].first) << mm->page_shift) +
               ((uintptr_t)addr & (mm->page_size - 1));
    }
    kmm_unlock(mm, &vm->lock);
    return phys;
}

size_t kmm__vm_usable(struct kmm *mm, const void *p, const char *fn)
{
    struct kmm_vm *vm = vm_of(mm);
    kmm_lock(mm, &vm->lock);
    size_t bytes = live_area_locked(vm, p, VM_VMALLOC, fn)->mapped << mm->page_shift;
    kmm_unlock(mm, &vm->lock);
    return bytes;
}

void kmm_vmalloc_set_tag(struct kmm *mm, void *addr, const char *tag)
{
    mm_live(mm, "kmm_vmalloc_set_tag");
    struct kmm_vm *vm = vm_of(mm);
    if (!vm || (uintptr_t)addr - vm->start >= vm->bytes)
        kmm__fatal_page(mm, "kmm_vmalloc_set_tag", "pointer not in the vmalloc space:", addr);
    kmm_lock(mm, &vm->lock);
    struct vm_node *n = kmm__vt_find(vm->root, (uintptr_t)addr >> mm->page_shift);
    bool ok = n && (n->state == VM_VMALLOC || n->state == VM_VMAP) && addr == area_addr(vm, n);
    if (ok)
        n->tag = tag;
    kmm_unlock(mm, &vm->lock);
    if (!ok)
        kmm__fatal_page(mm, "kmm_vmalloc_set_tag", "not the start of a live vmalloc area:", addr);
}

/* ---- realloc in place (Linux's vrealloc) ------------------------------------------------------------- */

/* Shrinks live area n (VM_BUSY now) to keep pages: unmaps and frees the
 * tail; the page after keep becomes the guard, the rest goes back. */
static bool area_shrink(struct kmm_vm *vm, struct vm_node *n, size_t keep)
{
    struct kmm *mm = vm->mm;
    struct vm_node *spare = node_new(vm);
    if (!spare)
        return false;
    size_t old_mapped = n->mapped, old_runs = n->nr_runs;
    unmap_call(vm, (uintptr_t)area_addr(vm, n) + (keep << mm->page_shift), (old_mapped - keep) << mm->page_shift);
    free_pages_from(vm, n, keep);
    truncate_runs(n, keep);
    n->mapped = keep;
    size_t freed = old_mapped - keep;
    kmm_lock(mm, &vm->lock);
    vm->mappings -= old_runs - n->nr_runs;
    vm->pages -= freed;
    trim_range(vm, n, freed, &spare);
    kmm_unlock(mm, &vm->lock);
    node_delete(vm, spare);
    return true;
}

/* Grows live area n (VM_BUSY now) to want pages if the range after it is
 * free and large enough: the old guard page and what follows get pages. */
static bool area_grow(struct kmm_vm *vm, struct vm_node *n, size_t want, unsigned flags, const char *fn)
{
    struct kmm *mm = vm->mm;
    unsigned shift = mm->page_shift;
    size_t extra = want - n->mapped, old_mapped = n->mapped, old_runs = n->nr_runs;
    struct vm_node *spare = node_new(vm);   /* to give the range back if this fails */
    if (!spare)
        return false;
    kmm_lock(mm, &vm->lock);
    struct vm_node *next = vm_node_end(n) < vm->end_page ? kmm__vt_find(vm->root, vm_node_end(n)) : NULL;
    bool room = next && next->state == VM_FREE && next->pages >= extra;
    struct vm_node *emptied = NULL;
    if (room) {
        n->pages += extra;
        vm->free_pages -= extra;
        if (next->pages == extra) {
            vm->root = kmm__vt_remove(vm->root, next->first);
            vm->free_ranges--;
            emptied = next;
        } else {
            next->first += extra;   /* still before the node after it: the order holds */
            next->pages -= extra;
            kmm__vt_update(vm->root, next->first);
        }
        kmm__vt_update(vm->root, n->first);
    }
    kmm_unlock(mm, &vm->lock);
    node_delete(vm, emptied);
    if (!room) {
        node_delete(vm, spare);
        return false;
    }
    if (take_pages(vm, n, old_mapped, want, flags & ~(unsigned)KMM_ZERO) != 0)
        goto undo;
    /* the new pages may come from other areas than the first ones */
    n->area_mask |= (uint8_t)(flags & KMM_AREA_MASK ? flags & KMM_AREA_MASK : KMM_AREA_ANY);
    if (!charge_mappings(vm, n->nr_runs - old_runs, fn))
        goto undo_pages;
    /* map the new pages: the old last run's new tail (when the new pages
     * continue it) and the new runs */
    for (size_t i = old_runs ? old_runs - 1 : 0; i < n->nr_runs; i++) {
        size_t from = n->runs[i].first > old_mapped ? n->runs[i].first : old_mapped, to = run_end(n, i);
        if (to <= from)
            continue;
        kmm_phys_t phys = n->runs[i].phys + ((kmm_phys_t)(from - n->runs[i].first) << shift);
        if (map_call(vm, (n->first + from) << shift, phys, (to - from) << shift, map_prot(n)) != 0) {
            unmap_call(vm, (n->first + old_mapped) << shift, (want - old_mapped) << shift);
            uncharge_mappings(vm, n->nr_runs - old_runs);
            goto undo_pages;
        }
    }
    va_unpoison(vm, n, old_mapped);
    kmm_lock(mm, &vm->lock);
    vm->pages += extra;
    kmm_unlock(mm, &vm->lock);
    node_delete(vm, spare);
    return true;

undo_pages:
    free_pages_from(vm, n, old_mapped);
    truncate_runs(n, old_mapped);
    n->mapped = old_mapped;
undo:
    /* the extra range goes back, free, after the guard page */
    kmm_lock(mm, &vm->lock);
    trim_range(vm, n, extra, &spare);
    kmm_unlock(mm, &vm->lock);
    node_delete(vm, spare);
    return false;
}

void *kmm__vrealloc(struct kmm *mm, void *p, size_t size, unsigned flags, const char *fn)
{
    struct kmm_vm *vm = vm_of(mm);
    size_t want = size / mm->page_size + ((size & (mm->page_size - 1)) != 0);
    kmm_lock(mm, &vm->lock);
    struct vm_node *n = live_area_locked(vm, p, VM_VMALLOC, fn);
    n->state = VM_BUSY;   /* still counted live: area_shrink and area_grow adjust the pages */
    kmm_unlock(mm, &vm->lock);
    size_t old = n->mapped;
    bool in_place = want == old || (want < old ? area_shrink(vm, n, want) : area_grow(vm, n, want, flags, fn));
    if (in_place) {
        if ((flags & KMM_ZERO) && size > n->size)
            __builtin_memset((char *)p + n->size, 0, size - n->size);
        kmm_lock(mm, &vm->lock);   /* what kmm_vmalloc_info reads changes under the lock */
        n->size = size;
        n->state = VM_VMALLOC;
        kmm_unlock(mm, &vm->lock);
        return p;
    }
    kmm_lock(mm, &vm->lock);
    n->state = VM_VMALLOC;
    bool nopopulate = n->nopopulate;
    kmm_unlock(mm, &vm->lock);
    /* the new area is mapped as the old one was */
    unsigned new_flags = (flags & ~(unsigned)KMM_ZERO) | (nopopulate ? KMM_NOPOPULATE : 0);
    void *q = vmalloc_common(mm, size, 0, new_flags, fn, __builtin_return_address(0));
    if (!q)
        return NULL;
    size_t keep = n->size < size ? n->size : size;
    __builtin_memcpy(q, p, keep);
    if ((flags & KMM_ZERO) && size > keep)
        __builtin_memset((char *)q + keep, 0, size - keep);
    kmm__vfree_as(mm, p, fn);
    return q;
}

/* ---- kmm_kvmalloc ---------------------------------------------------------------------------------------- */

void *kmm_kvmalloc(struct kmm *mm, size_t size, unsigned flags)
{
    mm_live(mm, "kmm_kvmalloc");
    /* checked here, so that no refusal names kmm_malloc */
    if (!flags_ok(mm, flags, 0, "kmm_kvmalloc"))
        return NULL;
    if (size <= mm->page_size) {
        /* a slab may need a few contiguous pages that fragmented memory no
         * longer has: then a page of vmalloc serves (Linux's kvmalloc falls
         * back the same way) */
        void *p = kmm_malloc(mm, size, flags);
        /* the pages of lazily freed areas are no one's: take them back and
         * try again before settling for an area (vm_model found kmm_malloc
         * failing for want of pages that lazy areas held) */
        if (!p && kmm_vmalloc_purge(mm))
            p = kmm_malloc(mm, size, flags);
        if (p)
            return p;
    }
    return vmalloc_common(mm, size ? size : 1, 0, flags, "kmm_kvmalloc", __builtin_return_address(0));
}

void kmm_kvfree(struct kmm *mm, void *addr)
{
    mm_live(mm, "kmm_kvfree");
    kmm_free(mm, addr);
}

/* ---- teardown, for kmm_destroy ----------------------------------------------------------------------------- */

static int release_run_array(void *arg, struct vm_node *n)
{
    struct kmm_vm *vm = arg;
    if (n->runs != n->inline_runs && !kmm__vm_owns(vm->mm, n->runs))
        kmm__meta_obj_free(vm->mm, n->runs, n->cap_runs * sizeof(*n->runs));
    return 0;
}

void kmm__vm_fork_lock(struct kmm *mm, bool lock)
{
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (!vm)
        return;
    if (lock)
        kmm_lock(mm, &vm->lock);
    else
        kmm_unlock(mm, &vm->lock);
}

/* In the child of a fork, an area still VM_BUSY was being made, freed,
 * purged or resized by a thread that is not there: how far it got (pages
 * taken, mapped, unmapped, freed) is not known, so it is kept as it is, for
 * good (as malloc's child leaks what other threads were allocating). The
 * counters are recounted from the tree: the gone thread may have been
 * anywhere between its updates of them. */
static int fork_recount(void *arg, struct vm_node *n)
{
    if (n->state == VM_BUSY)
        n->state = VM_ORPHAN;
    vm_count(arg, n);
    return 0;
}

void kmm__vm_fork_child(struct kmm *mm)
{
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (!vm)
        return;
    struct vm_counts k = { 0 };
    kmm__vt_walk(vm->root, fork_recount, &k);
    vm->areas = k.areas, vm->pages = k.pages, vm->vmap_areas = k.vmap_areas, vm->vmap_pages = k.vmap_pages;
    store_relaxed(&vm->lazy_areas, k.lazy_areas);
    vm->lazy_pages = k.lazy_pages;
    vm->free_ranges = k.free_ranges, vm->free_pages = k.free_pages;
    vm->mappings = k.mappings + 1;   /* and the reservation */
}

void kmm__vm_destroy(struct kmm *mm)
{
    struct kmm_vm *vm = vm_of(mm);
    if (!vm)
        return;
    /* the pages go with memory, the nodes with the metadata objects' chunks;
     * run arrays larger than a class are mappings of their own (those that
     * are vmalloc areas go with memory); only lazily freed areas carry
     * ASan poison */
    kmm__vt_walk(vm->root, release_run_array, vm);
    for (size_t i = 0; i <= VM_WARM_PAGES; i++)
        for (struct vm_node *n = vm->lazy[i]; n; n = n->next)
            va_forget(vm, n);
    vm_delete(mm, vm);
    mm->vm = NULL;
}
