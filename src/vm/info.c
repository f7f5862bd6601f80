/* info.c - what the vmalloc layer shows and checks: stats, the vmallocinfo
 * listing, and kmm_check's part. */
#include "vm_internal.h"

void kmm_vmalloc_stats(struct kmm *mm, struct kmm_vmalloc_stats *st)
{
    mm_live(mm, "kmm_vmalloc_stats");
    __builtin_memset(st, 0, sizeof(*st));
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (!vm)
        return;
    unsigned shift = mm->page_shift;
    kmm_lock(mm, &vm->lock);
    st->space_bytes = vm->bytes;
    st->free_bytes = vm->free_pages << shift;
    st->largest_free_bytes = (vm->root ? vm->root->max_free : 0) << shift;
    st->free_ranges = vm->free_ranges;
    st->areas = vm->areas;
    st->vmap_areas = vm->vmap_areas;
    st->pages = vm->pages;
    st->vmap_pages = vm->vmap_pages;
    st->lazy_areas = vm->lazy_areas;
    st->lazy_pages = vm->lazy_pages;
    st->mappings = vm->mappings;
    st->max_mappings = vm->max_mappings;
    st->allocs = vm->allocs;
    st->frees = vm->frees;
    st->purges = vm->purges;
    st->refused_mappings = vm->refused;
    st->reused = vm->reused;
    kmm_unlock(mm, &vm->lock);
    st->map_calls = load_relaxed(&vm->map_calls);
    st->unmap_calls = load_relaxed(&vm->unmap_calls);
}

struct info_walk {
    struct kmm *mm;
    void (*fn)(void *arg, const struct kmm_vmalloc_area_info *a);
    void *arg;
};

/* What /proc/vmallocinfo would say of n; false for what is no area (free
 * ranges, and areas being made or orphaned). */
static bool area_info(struct kmm *mm, const struct vm_node *n, struct kmm_vmalloc_area_info *a)
{
    static const char *const kinds[] = { [VM_VMALLOC] = "vmalloc", [VM_VMAP] = "vmap", [VM_LAZY] = "lazy-free" };
    if (n->state == VM_FREE || n->state == VM_BUSY || n->state == VM_ORPHAN)
        return false;
    unsigned shift = mm->page_shift;
    *a = (struct kmm_vmalloc_area_info){
        .start = n->first << shift,
        .end = vm_node_end(n) << shift,
        .guard = (n->first + n->mapped) << shift,
        .size = n->size,
        .pages = n->mapped,
        .runs = n->nr_runs,
        .kind = n->state == VM_VMAP && !(n->prot & KMM_PROT_WRITE) ? "vmap-ro" : kinds[n->state],
        .tag = n->tag,
        .caller = n->caller,
    };
    return true;
}

static int info_one(void *arg, struct vm_node *n)
{
    struct info_walk *w = arg;
    struct kmm_vmalloc_area_info a;
    if (area_info(w->mm, n, &a))
        w->fn(w->arg, &a);
    return 0;
}

void kmm_vmalloc_info(struct kmm *mm, void (*fn)(void *arg, const struct kmm_vmalloc_area_info *a), void *arg)
{
    mm_live(mm, "kmm_vmalloc_info");
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (!vm)
        return;
    struct info_walk w = { mm, fn, arg };
    kmm_lock(mm, &vm->lock);
    kmm__vt_walk(vm->root, info_one, &w);
    kmm_unlock(mm, &vm->lock);
}

bool kmm_vmalloc_area_at(struct kmm *mm, const void *addr, struct kmm_vmalloc_area_info *out)
{
    mm_live(mm, "kmm_vmalloc_area_at");
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (!vm || !kmm__vm_owns(mm, addr))
        return false;
    kmm_lock(mm, &vm->lock);
    struct vm_node *n = kmm__vt_find(vm->root, (uintptr_t)addr >> mm->page_shift);
    bool found = n && area_info(mm, n, out);
    kmm_unlock(mm, &vm->lock);
    return found;
}

/* ---- kmm_check ---------------------------------------------------------------- */

struct check_walk {
    struct kmm_vm *vm;
    uintptr_t expect;                 /* where the next range must start */
    bool prev_free;
    struct vm_counts n;               /* counted from the ranges */
    const char *why;
    uintptr_t where;
};

static int fail(struct check_walk *c, const char *why, uintptr_t page)
{
    c->why = why;
    c->where = page;
    return 1;
}

/* Every page of a vmalloc area's runs lies in a live page allocation, and
 * the allocations follow each other without a gap. */
static bool pages_allocated(struct kmm *mm, const struct vm_node *n)
{
    for (size_t i = 0; i < n->nr_runs; i++) {
        size_t end = i + 1 < n->nr_runs ? n->runs[i + 1].first : n->mapped;
        for (size_t page = n->runs[i].first; page < end;) {
            void *v = kmm_phys_to_virt(mm, n->runs[i].phys + ((kmm_phys_t)(page - n->runs[i].first) << mm->page_shift));
            size_t len = v ? kmm__pages_size(mm, OWNER_VMALLOC, v) : 0;
            if (!len)
                return false;
            page += len;
        }
    }
    return true;
}

static int check_one(void *arg, struct vm_node *n)
{
    struct check_walk *c = arg;
    struct kmm *mm = c->vm->mm;
    if (n->first != c->expect)
        return fail(c, "vmalloc space: ranges do not tile it (a gap or an overlap)", n->first);
    if (n->pages == 0)
        return fail(c, "vmalloc space: an empty range", n->first);
    c->expect = vm_node_end(n);
    bool is_free = n->state == VM_FREE;
    if (is_free && c->prev_free)
        return fail(c, "vmalloc space: two free ranges touch (not merged)", n->first);
    c->prev_free = is_free;
    if (is_free) {
        if (n->runs != n->inline_runs)
            return fail(c, "vmalloc space: a free range holds a run array", n->first);
        vm_count(&c->n, n);
        return 0;
    }
    if (n->state == VM_BUSY)
        return fail(c, "vmalloc space: an area is being mapped or unmapped (kmm_check needs the other threads stopped)", n->first);
    if (n->state == VM_ORPHAN) {
        vm_count(&c->n, n);
        return 0;
    }
    if (n->mapped == 0 || n->pages != n->mapped + 1)
        return fail(c, "vmalloc area: its length is not its pages and one guard page", n->first);
    if (n->nr_runs == 0 || n->runs[0].first != 0 || n->nr_runs > n->mapped)
        return fail(c, "vmalloc area: its runs do not start at its first page", n->first);
    for (size_t i = 0; i < n->nr_runs; i++) {
        if ((i + 1 < n->nr_runs && n->runs[i + 1].first <= n->runs[i].first) ||
            (n->runs[i].phys & (mm->page_size - 1)))
            return fail(c, "vmalloc area: runs out of order or misaligned", n->first);
        size_t end = i + 1 < n->nr_runs ? n->runs[i + 1].first : n->mapped;
        kmm_phys_t last = n->runs[i].phys + ((kmm_phys_t)(end - n->runs[i].first - 1) << mm->page_shift);
        if (!kmm_phys_to_virt(mm, n->runs[i].phys) || !kmm_phys_to_virt(mm, last))
            return fail(c, "vmalloc area: a run maps frames outside memory", n->first);
    }
    switch (n->state) {
    case VM_VMALLOC:
    case VM_LAZY:
        if (!pages_allocated(mm, n))
            return fail(c, "vmalloc area: a page it maps is not allocated in the page allocator", n->first);
        break;
    case VM_VMAP:
        break;
    default:
        return fail(c, "vmalloc space: a range in an unknown state", n->first);
    }
    vm_count(&c->n, n);
    return 0;
}

int kmm__vm_check(struct kmm *mm)
{
    struct kmm_vm *vm = __atomic_load_n(&mm->vm, __ATOMIC_ACQUIRE);
    if (!vm)
        return 0;
    struct check_walk c = { .vm = vm, .expect = vm->first_page };
    kmm_lock(mm, &vm->lock);
    const char *why = kmm__vt_check(vm->root);
    if (!why && kmm__vt_walk(vm->root, check_one, &c))
        why = c.why;
    if (!why && c.expect != vm->end_page)
        why = "vmalloc space: ranges do not reach its end";
    size_t lazy_listed = 0;
    for (size_t i = 0; i <= VM_WARM_PAGES; i++) {
        for (struct vm_node *n = vm->lazy[i]; n && !why; n = n->next, lazy_listed++) {
            if (n->state != VM_LAZY)
                why = "vmalloc space: a lazy list holds an area that is not lazily freed";
            else if (i ? n->mapped != i : n->mapped <= VM_WARM_PAGES)
                why = "vmalloc space: a lazily freed area is on the list of another size";
        }
    }
    if (!why && (c.n.areas != vm->areas || c.n.pages != vm->pages || c.n.vmap_areas != vm->vmap_areas ||
                 c.n.vmap_pages != vm->vmap_pages || c.n.lazy_areas != vm->lazy_areas ||
                 c.n.lazy_pages != vm->lazy_pages || lazy_listed != vm->lazy_areas))
        why = "vmalloc space: the area or page counts do not match the areas";
    if (!why && (c.n.free_ranges != vm->free_ranges || c.n.free_pages != vm->free_pages))
        why = "vmalloc space: the free counts do not match the free ranges";
    if (!why && c.n.mappings + 1 != vm->mappings)
        why = "vmalloc space: the mapping count does not match the areas' runs";
    kmm_unlock(mm, &vm->lock);
    if (!why)
        return 0;
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm_check: ");
    kmm__msg_str(&m, why);
    if (c.why == why) {
        kmm__msg_str(&m, " at ");
        kmm__msg_hex(&m, (uint64_t)(c.where << mm->page_shift));
    }
    kmm__report(mm, &m);
    return -1;
}
