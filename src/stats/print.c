/* print.c - kmm_stats_print: every layer's stats as text or JSON, one
 * printer per layer, in the order the layers stack up.
 *
 * It runs inside the malloc shim at exit, so it must never allocate: text is
 * formatted with snprintf into a buffer on the stack and written with
 * write(2). No stdio stream is used (glibc's dprintf mallocs a stream
 * buffer). Callbacks that run under a layer's lock (kmm_vmalloc_info) only
 * append to the buffer; the writes happen after the lock is dropped.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include <kmm.h>

#define KMM_STATS_LAYERS                                                                                          \
    (KMM_STATS_PAGES | KMM_STATS_SLAB | KMM_STATS_VMALLOC | KMM_STATS_META | KMM_STATS_UNMAPPED |                   \
     KMM_STATS_SHRINKERS | KMM_STATS_SECRET | KMM_STATS_EXECMEM)

/* Text listings of vmalloc areas stop here (the rest is counted). */
#define VMALLOC_TEXT_AREAS 14
#define MAX_CACHES 256

/* ---- output: a stack buffer in front of write(2) ------------------------------ */

struct out {
    int fd;
    int err;                 /* -errno of the first failed write; nothing is written after it */
    bool json;
    unsigned members;        /* JSON members written so far at the top level */
    size_t len;
    char buf[4096];
};

static void out_flush(struct out *o)
{
    size_t done = 0;
    while (done < o->len && !o->err) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);
        if (n < 0 && errno != EINTR)
            o->err = -errno;
        else if (n > 0)
            done += (size_t)n;
    }
    o->len = 0;
}

/* Appends one formatted piece if it fits in what is left of the buffer;
 * false (nothing appended) if not. Never writes: safe under a lock. */
__attribute__((format(printf, 2, 0))) static bool out_try_v(struct out *o, const char *fmt, va_list ap)
{
    size_t room = sizeof(o->buf) - o->len;
    int n = vsnprintf(o->buf + o->len, room, fmt, ap);
    if (n < 0 || (size_t)n >= room)
        return false;
    o->len += (size_t)n;
    return true;
}

__attribute__((format(printf, 2, 3))) static bool out_try(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool fitted = out_try_v(o, fmt, ap);
    va_end(ap);
    return fitted;
}

/* Appends one formatted piece, writing the buffer out first when it is
 * full. A piece longer than the whole buffer is cut (none of ours is). */
__attribute__((format(printf, 2, 3))) static void out_printf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool fitted = out_try_v(o, fmt, ap);
    va_end(ap);
    if (fitted)
        return;
    out_flush(o);
    va_start(ap, fmt);
    if (!out_try_v(o, fmt, ap))
        o->len = sizeof(o->buf) - 1;   /* vsnprintf filled it, cut and terminated */
    va_end(ap);
}

/* "12.3 MiB": bytes in the largest unit that keeps the number at least 1. */
static void out_size(struct out *o, uint64_t bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    unsigned u = 0;
    double v = (double)bytes;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    out_printf(o, v == (double)(uint64_t)v ? "%.0f %s" : "%.1f %s", v, unit[u]);
}

/* Copies s into dst (of cap bytes) escaped for a JSON string: names and
 * tags are the callers' and may hold quotes. Cut at cap. */
static const char *json_escape(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    for (; s && *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", c);
        } else {
            dst[n++] = (char)c;
        }
    }
    dst[n] = '\0';
    return dst;
}

/* Opens a layer's top-level JSON member: "name": */
static void out_member(struct out *o, const char *name)
{
    out_printf(o, "%s\"%s\":", o->members++ ? "," : "", name);
}

/* ---- the page allocator: totals, /proc/buddyinfo, areas ------------------------ */

/* LOWEST, LOW, NORMAL when the areas are the default ones: each ends at its
 * default limit or at the end of memory. */
static const char *area_name(const struct kmm_page_stats *st, unsigned a)
{
    static const char *const names[] = { "LOWEST", "LOW", "NORMAL" };
    static const uint64_t limits[] = KMM_DEFAULT_AREA_LIMITS;
    if (st->nr_areas != KMM_DEFAULT_NR_AREAS)
        return "";
    uint64_t mem_end = st->area[st->nr_areas - 1].end;
    for (unsigned i = 0; i < st->nr_areas; i++)
        if (st->area[i].end != (limits[i] < mem_end ? limits[i] : mem_end))
            return "";
    return names[a];
}

static unsigned top_order(const struct kmm_page_stats *st)
{
    unsigned top = 10;
    for (unsigned a = 0; a < st->nr_areas; a++)
        for (unsigned o = 0; o <= KMM_MAX_ORDER; o++)
            if (st->nr_free[a][o] && o > top)
                top = o;
    return top;
}

static void print_pages_text(struct out *o, const struct kmm_page_stats *st)
{
    out_printf(o, "Page allocator: page size %zu, %zu pages (", st->page_size, st->total_pages);
    out_size(o, (uint64_t)st->total_pages * st->page_size);
    out_printf(o, ")\n  allocated %zu, free %zu (of which %zu in per-thread caches), reserved %zu\n",
               st->allocated_pages, st->free_pages, st->cached_pages, st->reserved_pages);
    out_printf(o, "  resident %zu pages (", st->resident_pages);
    out_size(o, (uint64_t)st->resident_pages * st->page_size);
    out_printf(o, ")\n");
    unsigned top = top_order(st);
    out_printf(o, "  free blocks per order (like /proc/buddyinfo):\n  %-22s", "area");
    for (unsigned k = 0; k <= top; k++)
        out_printf(o, " %5u", k);
    out_printf(o, "\n");
    for (unsigned a = 0; a < st->nr_areas; a++) {
        char label[32];
        snprintf(label, sizeof(label), "%u %s", a, area_name(st, a));
        out_printf(o, "  %-22s", label);
        for (unsigned k = 0; k <= top; k++)
            out_printf(o, " %5zu", st->nr_free[a][k]);
        out_printf(o, "\n");
    }
    out_printf(o, "  areas:\n");
    for (unsigned a = 0; a < st->nr_areas; a++) {
        const struct kmm_area_stats *as = &st->area[a];
        out_printf(o, "    %u [%#llx, %#llx) ", a, (unsigned long long)as->start, (unsigned long long)as->end);
        out_size(o, as->end - as->start);
        out_printf(o, ": %zu pages, %zu free, %zu reserved\n", as->total_pages, as->free_pages, as->reserved_pages);
    }
}

static void print_pages_json(struct out *o, const struct kmm_page_stats *st)
{
    out_printf(o, "{\"page_size\":%zu,\"total_pages\":%zu,\"free_pages\":%zu,\"cached_pages\":%zu,"
                  "\"allocated_pages\":%zu,\"reserved_pages\":%zu,\"resident_pages\":%zu,\"areas\":[",
               st->page_size, st->total_pages, st->free_pages, st->cached_pages, st->allocated_pages,
               st->reserved_pages, st->resident_pages);
    for (unsigned a = 0; a < st->nr_areas; a++) {
        const struct kmm_area_stats *as = &st->area[a];
        out_printf(o, "%s{\"start\":%llu,\"end\":%llu,\"total_pages\":%zu,\"free_pages\":%zu,\"reserved_pages\":%zu,"
                      "\"nr_free\":[",
                   a ? "," : "", (unsigned long long)as->start, (unsigned long long)as->end, as->total_pages,
                   as->free_pages, as->reserved_pages);
        for (unsigned k = 0; k <= KMM_MAX_ORDER; k++)
            out_printf(o, "%s%zu", k ? "," : "", st->nr_free[a][k]);
        out_printf(o, "]}");
    }
    out_printf(o, "]}");
}

static void print_pages(struct out *o, struct kmm *mm)
{
    struct kmm_page_stats st;
    kmm_page_stats(mm, &st);
    if (o->json) {
        out_member(o, "pages");
        print_pages_json(o, &st);
    } else {
        print_pages_text(o, &st);
    }
}

/* ---- kmm_malloc's caches: /proc/slabinfo ------------------------------------- */

static void print_slab(struct out *o, struct kmm *mm)
{
    struct kmm_cache_stats st[MAX_CACHES];
    size_t n = kmm_slab_stats(mm, st, MAX_CACHES);
    size_t shown = n < MAX_CACHES ? n : MAX_CACHES;
    if (o->json) {
        out_member(o, "slab");
        out_printf(o, "[");
        for (size_t i = 0; i < shown; i++) {
            char name[sizeof(st[i].name) * 6];
            out_printf(o, "%s{\"name\":\"%s\",\"object_size\":%zu,\"slot_size\":%zu,\"objects_per_slab\":%zu,"
                          "\"pages_per_slab\":%zu,\"active_objects\":%zu,\"cached_objects\":%zu,\"depot_objects\":%zu,"
                          "\"total_objects\":%zu,\"slabs\":%zu,\"empty_slabs\":%zu,\"pages\":%zu,\"waste_bytes\":%zu}",
                       i ? "," : "", json_escape(name, sizeof(name), st[i].name), st[i].object_size,
                       st[i].slot_size, st[i].objects_per_slab, st[i].pages_per_slab, st[i].active_objects,
                       st[i].cached_objects, st[i].depot_objects, st[i].total_objects, st[i].slabs,
                       st[i].empty_slabs, st[i].pages, st[i].waste_bytes);
        }
        out_printf(o, "]");
        return;
    }
    size_t pages = 0, used = 0;
    out_printf(o, "slabinfo: %-18s %8s %8s %8s %7s %6s %6s %6s %10s\n", "cache", "objsize", "active", "total",
               "cached", "slabs", "pg/slb", "pages", "waste");
    for (size_t i = 0; i < shown; i++) {
        out_printf(o, "          %-18s %8zu %8zu %8zu %7zu %6zu %6zu %6zu %10zu\n", st[i].name, st[i].object_size,
                   st[i].active_objects, st[i].total_objects, st[i].cached_objects + st[i].depot_objects,
                   st[i].slabs, st[i].pages_per_slab, st[i].pages, st[i].waste_bytes);
        pages += st[i].pages;
        used += st[i].active_objects * st[i].object_size;
    }
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    if (pages)
        out_printf(o, "          %zu caches hold %zu pages (", n, pages);
    else
        out_printf(o, "          no slab in use (");
    out_size(o, (uint64_t)pages * ps.page_size);
    out_printf(o, "); objects in use fill %.1f%% of them (class rounding, free slots, magazines)\n",
               pages ? 100.0 * (double)used / (double)(pages * ps.page_size) : 0.0);
}

/* ---- vmalloc: /proc/vmallocinfo and totals --------------------------------------
 *
 * kmm_vmalloc_info calls back under the vmalloc lock, where nothing may be
 * written: each pass appends the areas from a cursor on until the buffer is
 * full, the buffer is written out after the pass, and the next pass goes on
 * from the first area that did not fit. */

struct area_pass {
    struct out *o;
    uintptr_t from;          /* areas starting below were written by an earlier pass */
    uintptr_t next;          /* the first area that did not fit; 0 when all did */
    unsigned listed;         /* text: areas listed so far (at most VMALLOC_TEXT_AREAS) */
    unsigned total;          /* areas seen in this pass */
};

static bool append_area(struct area_pass *p, const struct kmm_vmalloc_area_info *a)
{
    struct out *o = p->o;
    if (!o->json)
        return out_try(o, "vmallocinfo: 0x%012lx-0x%012lx %9zu pages=%-4zu runs=%-3zu %-9s %.200s\n",
                       (unsigned long)a->start, (unsigned long)a->end, (size_t)(a->end - a->start), a->pages, a->runs,
                       a->kind, a->tag);
    char tag[1024];
    return out_try(o, "%s{\"start\":%lu,\"end\":%lu,\"size\":%zu,\"pages\":%zu,\"runs\":%zu,\"kind\":\"%s\",\"tag\":\"%s\"}",
                   p->listed ? "," : "", (unsigned long)a->start, (unsigned long)a->end, a->size, a->pages, a->runs,
                   a->kind, json_escape(tag, sizeof(tag), a->tag));
}

static void area_pass_fn(void *arg, const struct kmm_vmalloc_area_info *a)
{
    struct area_pass *p = arg;
    p->total++;
    if (a->start < p->from || p->next || (!p->o->json && p->listed >= VMALLOC_TEXT_AREAS))
        return;
    if (append_area(p, a))
        p->listed++;
    else
        p->next = a->start;
}

/* The areas, a pass at a time; returns how many there are. */
static unsigned print_areas(struct out *o, struct kmm *mm)
{
    struct area_pass p = { .o = o };
    do {
        out_flush(o);
        p.next = 0;
        p.total = 0;
        kmm_vmalloc_info(mm, area_pass_fn, &p);
        if (p.next && p.from == p.next)
            break;   /* one area longer than the buffer: cannot happen with the tag cut to 1 KiB */
        p.from = p.next;
    } while (p.next && !o->err);
    return p.total;
}

static void print_vmalloc(struct out *o, struct kmm *mm)
{
    struct kmm_vmalloc_stats vs;
    if (o->json) {
        kmm_vmalloc_stats(mm, &vs);
        out_member(o, "vmalloc");
        out_printf(o, "{\"space_bytes\":%zu,\"free_bytes\":%zu,\"largest_free_bytes\":%zu,\"free_ranges\":%zu,"
                      "\"areas\":%zu,\"pages\":%zu,\"vmap_areas\":%zu,\"vmap_pages\":%zu,\"lazy_areas\":%zu,"
                      "\"lazy_pages\":%zu,\"mappings\":%zu,\"max_mappings\":%zu,\"map_calls\":%llu,"
                      "\"unmap_calls\":%llu,\"allocs\":%llu,\"frees\":%llu,\"purges\":%llu,\"refused_mappings\":%llu,"
                      "\"reused\":%llu,\"list\":[",
                   vs.space_bytes, vs.free_bytes, vs.largest_free_bytes, vs.free_ranges, vs.areas, vs.pages,
                   vs.vmap_areas, vs.vmap_pages, vs.lazy_areas, vs.lazy_pages, vs.mappings, vs.max_mappings,
                   (unsigned long long)vs.map_calls, (unsigned long long)vs.unmap_calls,
                   (unsigned long long)vs.allocs, (unsigned long long)vs.frees, (unsigned long long)vs.purges,
                   (unsigned long long)vs.refused_mappings, (unsigned long long)vs.reused);
        print_areas(o, mm);
        out_printf(o, "]}");
        return;
    }
    unsigned total = print_areas(o, mm);
    if (total > VMALLOC_TEXT_AREAS)
        out_printf(o, "vmallocinfo: ... and %u more areas\n", total - VMALLOC_TEXT_AREAS);
    kmm_vmalloc_stats(mm, &vs);
    out_printf(o, "vmalloc: space ");
    out_size(o, vs.space_bytes);
    out_printf(o, ", ");
    out_size(o, vs.free_bytes);
    out_printf(o, " free in %zu ranges (largest ", vs.free_ranges);
    out_size(o, vs.largest_free_bytes);
    out_printf(o, ")\n         %zu areas holding %zu pages, %zu vmap areas mapping %zu caller pages, %zu lazily freed "
                  "(%zu pages)\n",
               vs.areas, vs.pages, vs.vmap_areas, vs.vmap_pages, vs.lazy_areas, vs.lazy_pages);
    out_printf(o, "         %zu mappings of a limit of %zu; %llu map calls, %llu unmap calls, %llu purges, %llu refused,\n"
                  "         %llu allocations took a lazily freed area back mapped (no call)\n",
               vs.mappings, vs.max_mappings, (unsigned long long)vs.map_calls, (unsigned long long)vs.unmap_calls,
               (unsigned long long)vs.purges, (unsigned long long)vs.refused_mappings,
               (unsigned long long)vs.reused);
}

/* ---- kmm's own bookkeeping (metadata memory, out of the direct map) ------------- */

static void print_meta(struct out *o, struct kmm *mm)
{
    struct kmm_meta_stats ms;
    kmm_meta_stats(mm, &ms);
    if (o->json) {
        out_member(o, "meta");
        out_printf(o, "{\"objects\":%zu,\"object_bytes\":%zu,\"chunks\":%zu,\"held_bytes\":%zu,\"large_objects\":%zu,"
                      "\"large_bytes\":%zu,\"large_held_bytes\":%zu}",
                   ms.objects, ms.object_bytes, ms.chunks, ms.held_bytes, ms.large_objects, ms.large_bytes,
                   ms.large_held_bytes);
        return;
    }
    out_printf(o, "metadata objects: %zu in use (", ms.objects);
    out_size(o, ms.object_bytes);
    out_printf(o, ") in %zu chunks (", ms.chunks);
    out_size(o, ms.held_bytes);
    out_printf(o, " held), %zu larger ones (", ms.large_objects);
    out_size(o, ms.large_bytes);
    out_printf(o, ", ");
    out_size(o, ms.large_held_bytes);
    out_printf(o, " held); outside the direct map\n");
}

/* ---- the unmapped cache: the seed's debugfs table (Linux's unmapped_alloc) -------- */

static bool unmapped_used(const struct kmm_unmapped_stats *us)
{
    return us->pages_held || us->unmap_calls || us->pages_nocache;
}

static void print_orders_json(struct out *o, const char *key, const size_t *v)
{
    out_printf(o, "\"%s\":[", key);
    for (unsigned k = 0; k <= KMM_MAX_ORDER; k++)
        out_printf(o, "%s%zu", k ? "," : "", v[k]);
    out_printf(o, "]");
}

static void print_orders_row(struct out *o, const char *label, const size_t *v, unsigned top)
{
    out_printf(o, "%-10s", label);
    for (unsigned k = 0; k <= top; k++)
        out_printf(o, "%5zu ", v[k]);
    out_printf(o, "\n");
}

static void print_unmapped(struct out *o, const struct kmm_unmapped_stats *us)
{
    if (o->json) {
        out_member(o, "unmapped");
        out_printf(o, "{\"direct_map_mappings\":%zu,", us->direct_map_mappings);
        print_orders_json(o, "free", us->free);
        out_printf(o, ",");
        print_orders_json(o, "cached", us->cached);
        out_printf(o, ",");
        print_orders_json(o, "released", us->released);
        out_printf(o, ",\"pages_held\":%zu,\"pages_free\":%zu,\"pages_used\":%zu,\"pages_secret\":%zu,"
                      "\"pages_execmem\":%zu,\"pages_nocache\":%zu,\"pages_beside\":%zu,\"chunks\":%zu,"
                      "\"unmap_calls\":%zu,\"restore_calls\":%zu,\"pages_zeroed\":%zu,\"shrinks\":%zu}",
                   us->pages_held, us->pages_free, us->pages_used, us->pages_secret, us->pages_execmem,
                   us->pages_nocache, us->pages_beside, us->chunks, us->unmap_calls, us->restore_calls,
                   us->pages_zeroed, us->shrinks);
        return;
    }
    unsigned top = 10;
    for (unsigned k = 11; k <= KMM_MAX_ORDER; k++)
        if (us->free[k] || us->cached[k] || us->released[k])
            top = k;
    out_printf(o, "unmapped cache (direct map: %zu mappings)\n%-10s", us->direct_map_mappings, "Order:");
    for (unsigned k = 0; k <= top; k++)
        out_printf(o, "%5u ", k);
    out_printf(o, "\n");
    print_orders_row(o, "Free:", us->free, top);
    print_orders_row(o, "Cached:", us->cached, top);
    print_orders_row(o, "Released:", us->released, top);
    out_printf(o, "  %zu pages held in %zu chunks: %zu free, %zu used by callers, %zu by secret memory, %zu by "
                  "execmem;\n",
               us->pages_held, us->chunks, us->pages_free, us->pages_used, us->pages_secret, us->pages_execmem);
    out_printf(o, "  %zu held beside the last chunk for the next refill (still mapped); %zu taken alone\n"
                  "  (KMM_UNMAPPED_NOCACHE); %zu unmap and %zu restore calls, %zu pages zeroed for reuse, %zu shrinks\n",
               us->pages_beside, us->pages_nocache, us->unmap_calls, us->restore_calls, us->pages_zeroed,
               us->shrinks);
}

/* ---- shrinkers, in the order an allocation that fails asks them ------------------- */

struct shrinker_print {
    struct out *o;
    unsigned n;
};

static void print_shrinker(void *arg, const struct kmm_shrinker_info *info)
{
    struct shrinker_print *sp = arg;
    struct out *o = sp->o;
    char name[256];
    if (o->json)
        out_printf(o, "%s{\"name\":\"%s\",\"count\":%zu,\"scans\":%llu,\"scanned\":%llu}", sp->n ? "," : "",
                   json_escape(name, sizeof(name), info->name ? info->name : "(unnamed)"), info->count,
                   (unsigned long long)info->scans, (unsigned long long)info->scanned);
    else
        out_printf(o, "  %-24s could give back %zu pages now; %llu scans gave back %llu pages\n",
                   info->name ? info->name : "(unnamed)", info->count, (unsigned long long)info->scans,
                   (unsigned long long)info->scanned);
    sp->n++;
}

static void print_shrinkers(struct out *o, struct kmm *mm)
{
    struct shrinker_print sp = { .o = o };
    if (o->json) {
        out_member(o, "shrinkers");
        out_printf(o, "[");
        kmm_shrinker_for_each(mm, print_shrinker, &sp);
        out_printf(o, "]");
        return;
    }
    out_printf(o, "shrinkers (asked in this order when an allocation fails):\n");
    kmm_shrinker_for_each(mm, print_shrinker, &sp);
    if (!sp.n)
        out_printf(o, "  none registered\n");
}

/* ---- secret memory -------------------------------------------------------------- */

static void print_secret(struct out *o, struct kmm *mm, const struct kmm_secret_stats *ss)
{
    const char *backing = kmm_secret_backing_name(kmm_secret_backing(mm));
    bool memfd = kmm_secret_backing_available(mm, KMM_SECRET_MEMFD);
    if (o->json) {
        out_member(o, "secret");
        out_printf(o, "{\"backing\":\"%s\",\"memfd_available\":%s,\"allocations\":%zu,\"bytes\":%zu,\"pages\":%zu,"
                      "\"locked_bytes\":%zu,\"memfd_allocations\":%zu,\"allocs\":%llu,\"frees\":%llu,"
                      "\"refused_memlock\":%llu}",
                   backing, memfd ? "true" : "false", ss->allocations, ss->bytes, ss->pages, ss->locked_bytes,
                   ss->memfd_allocations, (unsigned long long)ss->allocs, (unsigned long long)ss->frees,
                   (unsigned long long)ss->refused_memlock);
        return;
    }
    out_printf(o, "secret memory: %zu allocations live (%zu bytes asked, %zu pages, ", ss->allocations, ss->bytes,
               ss->pages);
    out_size(o, ss->locked_bytes);
    out_printf(o, " locked, %zu backed by memfd_secret); backing of new ones: %s (memfd_secret %savailable)\n"
                  "  %llu allocations, %llu frees, %llu refused at RLIMIT_MEMLOCK\n",
               ss->memfd_allocations, backing, memfd ? "" : "not ", (unsigned long long)ss->allocs,
               (unsigned long long)ss->frees, (unsigned long long)ss->refused_memlock);
}

/* ---- execmem ---------------------------------------------------------------------- */

static void print_execmem(struct out *o, struct kmm *mm, const struct kmm_execmem_stats *es)
{
    if (o->json) {
        out_member(o, "execmem");
        out_printf(o, "{\"allocations\":%zu,\"bytes\":%zu,\"used_bytes\":%zu,\"chunks\":%zu,\"pages\":%zu,"
                      "\"meta_bytes\":%zu,\"allocs\":%llu,\"frees\":%llu,\"writes\":%llu,\"write_calls\":%llu}",
                   es->allocations, es->bytes, es->used_bytes, es->chunks, es->pages, es->meta_bytes,
                   (unsigned long long)es->allocs, (unsigned long long)es->frees, (unsigned long long)es->writes,
                   (unsigned long long)es->write_calls);
        return;
    }
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    out_printf(o, "execmem: %zu allocations live (%zu bytes asked, %zu usable) in %zu chunks holding %zu pages (",
               es->allocations, es->bytes, es->used_bytes, es->chunks, es->pages);
    out_size(o, (uint64_t)es->pages * ps.page_size);
    out_printf(o, "), ");
    out_size(o, es->meta_bytes);
    out_printf(o, " of bookkeeping\n  %llu allocations, %llu frees, %llu writes in %llu platform writes\n",
               (unsigned long long)es->allocs, (unsigned long long)es->frees, (unsigned long long)es->writes,
               (unsigned long long)es->write_calls);
}

/* ---- all of it -------------------------------------------------------------------- */

/* No layer named: the page allocator, slabs, vmalloc, metadata and the
 * shrinkers; the unmapped cache, secret memory and execmem only if this
 * memory system has used them (the malloc shim does not). */
static unsigned layers_to_print(struct kmm *mm, unsigned flags, struct kmm_unmapped_stats *us,
                                struct kmm_secret_stats *ss, struct kmm_execmem_stats *es)
{
    unsigned named = flags & KMM_STATS_LAYERS;
    unsigned layers = named ? named
                            : KMM_STATS_PAGES | KMM_STATS_SLAB | KMM_STATS_VMALLOC | KMM_STATS_META | KMM_STATS_SHRINKERS;
    if (!named || (named & KMM_STATS_UNMAPPED)) {
        kmm_unmapped_stats(mm, us);
        layers |= !named && unmapped_used(us) ? KMM_STATS_UNMAPPED : 0;
    }
    if (!named || (named & KMM_STATS_SECRET)) {
        kmm_secret_stats(mm, ss);
        layers |= !named && (ss->allocs || ss->refused_memlock) ? KMM_STATS_SECRET : 0;
    }
    if (!named || (named & KMM_STATS_EXECMEM)) {
        kmm_execmem_stats(mm, es);
        layers |= !named && es->allocs ? KMM_STATS_EXECMEM : 0;
    }
    return layers;
}

int kmm_stats_print(struct kmm *mm, int fd, unsigned flags)
{
    struct out o = { .fd = fd, .json = flags & KMM_STATS_JSON };
    struct kmm_unmapped_stats us;
    struct kmm_secret_stats ss;
    struct kmm_execmem_stats es;
    unsigned layers = layers_to_print(mm, flags, &us, &ss, &es);
    bool braces = o.json && !(flags & KMM_STATS_JSON_MEMBERS);
    if (braces)
        out_printf(&o, "{");
    if (layers & KMM_STATS_PAGES)
        print_pages(&o, mm);
    if (layers & KMM_STATS_SLAB)
        print_slab(&o, mm);
    if (layers & KMM_STATS_VMALLOC)
        print_vmalloc(&o, mm);
    if (layers & KMM_STATS_META)
        print_meta(&o, mm);
    if (layers & KMM_STATS_UNMAPPED)
        print_unmapped(&o, &us);
    if (layers & KMM_STATS_SHRINKERS)
        print_shrinkers(&o, mm);
    if (layers & KMM_STATS_SECRET)
        print_secret(&o, mm, &ss);
    if (layers & KMM_STATS_EXECMEM)
        print_execmem(&o, mm, &es);
    if (braces)
        out_printf(&o, "}\n");
    out_flush(&o);
    return o.err;
}
