/* main.c - the guest kernel's tests: the freestanding cases (tests/freestanding),
 * run over the guest platform on the firmware's memory, one line per case,
 * then the figures (bench/guest), then "N passed, N failed" as the last line.
 *
 * Command line (QEMU's -append): kmm.accel=NAME labels the figures with the
 * accelerator the host chose; kmm.fail adds a case that fails on purpose
 * (the host side's failure path is tested with it); kmm.nofigures skips the
 * figures. */
#include "guest.h"
#include "ktest.h"

void guest_figures(struct kmm *mm, const char *accel);

static const uint64_t area_limits[] = { 16ull << 20, 4ull << 30, UINT64_MAX };
static unsigned passed, failed, case_failures;

void ktest_fail(const char *file, int line, const char *expr)
{
    guest_printf("    %s:%d: expected %s\n", file, line, expr);
    case_failures++;
}

/* The value of "key=" on the command line, copied to out; or whether the
 * bare word key is there (out NULL). */
static bool cmdline_has(const char *key, char *out, size_t size)
{
    const char *s = guest_machine.cmdline;
    size_t klen = __builtin_strlen(key);
    while (*s) {
        while (*s == ' ')
            s++;
        const char *w = s;
        while (*s && *s != ' ')
            s++;
        if ((size_t)(s - w) >= klen && !__builtin_memcmp(w, key, klen)) {
            if (!out && (size_t)(s - w) == klen)
                return true;
            if (out && w[klen] == '=') {
                size_t n = 0;
                for (const char *v = w + klen + 1; v < s && n + 1 < size; v++)
                    out[n++] = *v;
                out[n] = '\0';
                return true;
            }
        }
    }
    return false;
}

static const char *fault_words(void) { return guest_last_fault.explained; }

static void deliberate_failure(const struct ktest_env *env)
{
    (void)env;
    KT_EXPECT(1 + 1 == 3);
}
static const struct ktest failing_case = { .name = "deliberate_failure", .run = deliberate_failure };

/* ---- the platform's own pieces, through its hooks -------------------------- */

/* Address space given back is reused, and giving all of it back leaves the
 * space as it was (page tables are never freed, so a space that only grows
 * runs the table pool dry). */
static void platform_vm_space_reused(const struct ktest_env *env)
{
    (void)env;
    const struct kmm_platform *pf = &kmm_platform_guest;
    struct guest_platform_stats before, after;
    guest_platform_stats(&before);
    void *a = pf->vm_reserve(NULL, 1 << 20, 4096), *b = pf->vm_reserve(NULL, 3 << 20, 1 << 21),
         *c = pf->vm_reserve(NULL, 1 << 20, 4096);
    KT_EXPECT(a && b && c && ((uintptr_t)b & ((1 << 21) - 1)) == 0);
    KT_EXPECT(pf->vm_reserve(NULL, 4096, 3 << 12) == NULL);   /* alignment not a power of two: refused */
    pf->vm_unreserve(NULL, b, 3 << 20);
    void *again = pf->vm_reserve(NULL, 1 << 20, 1 << 21);
    KT_EXPECT(again == b);   /* first fit: the hole b left */
    pf->vm_unreserve(NULL, a, 1 << 20);
    pf->vm_unreserve(NULL, again, 1 << 20);
    pf->vm_unreserve(NULL, c, 1 << 20);
    guest_platform_stats(&after);
    KT_EXPECT(after.vmalloc_free_ranges == before.vmalloc_free_ranges);
    KT_EXPECT(after.vmalloc_dropped_bytes == before.vmalloc_dropped_bytes);
}

/* A change of the direct map that cannot be made in whole changes nothing. */
static void platform_direct_map_all_or_nothing(const struct ktest_env *env)
{
    /* the last page of the first usable range, and the hole after it */
    uint64_t end = 0;
    for (unsigned i = 0; i < guest_machine.nr_e820 && !end; i++)
        if (guest_machine.e820[i].type == 1)
            end = guest_machine.e820[i].end & ~4095ull;
    kmm_phys_t last = end - 4096;
    KT_EXPECT(kmm_reserve_pages(env->mm, last, 1) == 0);   /* nobody else's while the case flips it */
    KT_EXPECT(guest_direct_set_present(last, 2 * 4096, false) == -KMM_EINVAL);
    KT_EXPECT(env->probe_read((const void *)(uintptr_t)(GUEST_DIRECT_MAP + last)) == 0);   /* still there */
    KT_EXPECT(guest_direct_set_present(last, 4096, false) == 0);
    KT_EXPECT(env->probe_read((const void *)(uintptr_t)(GUEST_DIRECT_MAP + last)) == -1);
    KT_EXPECT(guest_direct_set_present(last, 4096, true) == 0);
    KT_EXPECT(env->probe_read((const void *)(uintptr_t)(GUEST_DIRECT_MAP + last)) == 0);
    kmm_unreserve_pages(env->mm, last, 1);
}

static const struct ktest platform_cases[] = {
    { .name = "platform_vm_space_reused", .run = platform_vm_space_reused },
    { .name = "platform_direct_map_all_or_nothing", .run = platform_direct_map_all_or_nothing },
    { .name = NULL },
};

static void run_case(const struct ktest *c, const struct ktest_env *env)
{
    case_failures = 0;
    uint64_t t0 = guest_rdtsc();
    c->run(env);
    kmm_drain(env->mm);
    if (kmm_check(env->mm) != 0)
        ktest_fail(__FILE__, __LINE__, "kmm_check(mm) == 0 after the case");
    uint64_t mcycles = (guest_rdtsc() - t0) / 1000000;
    if (case_failures)
        failed++;
    else
        passed++;
    guest_printf("%s %3u %s (page size %zu, %lu Mcycles)\n", case_failures ? "FAIL" : "ok  ", passed + failed,
                 c->name, env->page_size, (unsigned long)mcycles);
}

/* One memory system over all of the machine's memory, in three areas; the
 * kernel image and the boot structures reserved; then every case. */
static struct kmm *run_all(size_t page_size, bool guest_cases, bool fail)
{
    struct kmm_config cfg = { .page_size = page_size, .area_limits = area_limits, .nr_areas = 3,
                              .platform = &kmm_platform_guest };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        guest_panic("kmm_create failed (error %d)", guest_errno);
    int rc = guest_reserve_boot_memory(mm);
    if (rc != 0)
        guest_panic("reserving the kernel image and boot structures: %d", rc);
    guest_fault_mm = mm;
    struct ktest_env env = {
        .mm = mm, .page_size = page_size, .area_limits = area_limits, .nr_areas = 3,
        .direct_map = (uintptr_t)GUEST_DIRECT_MAP, .has_vm = true, .has_unmapped = true,
        .probe_write = guest_probe_write, .probe_read = guest_probe_read, .last_fault = fault_words,
    };
    /* what the firmware keeps, as it said it, for the cases to check that
     * kmm refuses it; and the first hole in its map (the legacy VGA/ROM
     * range or the PCI hole) */
    static struct ktest_range firmware[GUEST_MAX_E820];
    unsigned nr_firmware = 0;
    for (unsigned i = 0; i < guest_machine.nr_e820; i++)
        if (guest_machine.e820[i].type != 1)
            firmware[nr_firmware++] = (struct ktest_range){ guest_machine.e820[i].start, guest_machine.e820[i].end };
    env.firmware_reserved = firmware;
    env.nr_firmware_reserved = nr_firmware;
    env.image = (struct ktest_range){ guest_machine.image_start, guest_machine.image_end };
    env.metadata = (struct ktest_range){ guest_machine.meta_pool_start, guest_machine.meta_pool_end };
    for (unsigned i = 0; i < guest_machine.nr_e820; i++) {
        const struct guest_e820 *r = &guest_machine.e820[i];
        if (r->type != 1) {
            env.hole_start = (r->start + page_size - 1) & ~(uint64_t)(page_size - 1);
            env.hole_end = r->end & ~(uint64_t)(page_size - 1);
            if (env.hole_end > env.hole_start)
                break;
        }
    }
    for (const struct ktest *const *s = ktest_suites; *s; s++)
        for (const struct ktest *c = *s; c->name; c++)
            if (guest_cases || !c->guest_only)
                run_case(c, &env);
    for (const struct ktest *c = platform_cases; guest_cases && c->name; c++)
        run_case(c, &env);
    if (fail)
        run_case(&failing_case, &env);
    return mm;
}

/* kmm.misuse=WHAT: a misuse that must end the run in a panic that names it
 * (the host side checks the words): the failure paths of kmm's core and of
 * the fault handler, on real hardware state. */
static _Noreturn void misuse(const char *what)
{
    struct kmm_config cfg = { .area_limits = area_limits, .nr_areas = 3, .platform = &kmm_platform_guest };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm)
        guest_panic("kmm_create failed");
    if (guest_reserve_boot_memory(mm) != 0)   /* or the kernel's own page tables are kmm's to hand out */
        guest_panic("reserving the kernel image and boot structures failed");
    guest_fault_mm = mm;
    if (!__builtin_strcmp(what, "double_free")) {
        void *p = kmm_malloc(mm, 64, 0);
        kmm_free(mm, p);
        kmm_free(mm, p);   /* kmm's fatal hook: guest_panic */
    } else if (!__builtin_strcmp(what, "guard_overflow")) {
        volatile char *v = kmm_vmalloc(mm, 4096, 0);
        v[4096] = 1;   /* no probe: the fault handler panics, naming the guard page */
    } else if (!__builtin_strcmp(what, "wrong_layer")) {
        void *v = kmm_vmalloc(mm, 8192, 0);
        kmm_free_pages(mm, v);   /* not the page allocator's: refused, naming the owner */
    }
    guest_panic("kmm.misuse=%s: the run went on", what);
}

unsigned guest_kernel_main(void)
{
    char accel[32] = "unknown";
    cmdline_has("kmm.accel", accel, sizeof accel);
    uint64_t usable = 0;
    for (unsigned i = 0; i < guest_machine.nr_e820; i++)
        if (guest_machine.e820[i].type == 1)
            usable += guest_machine.e820[i].end - guest_machine.e820[i].start;
    guest_printf("kmm guest: x86-64 long mode, accelerator %s, %lu MiB usable RAM in the firmware's map:\n", accel,
                 (unsigned long)(usable >> 20));
    for (unsigned i = 0; i < guest_machine.nr_e820; i++)
        guest_printf("  e820 [%016lx, %016lx) %s\n", (unsigned long)guest_machine.e820[i].start,
                     (unsigned long)guest_machine.e820[i].end,
                     guest_machine.e820[i].type == 1 ? "usable" : "reserved");
    guest_printf("kmm's metadata: frames [%lx, %lx) out of kmm's memory and the direct map, mapped at %p\n",
                 (unsigned long)guest_machine.meta_pool_start, (unsigned long)guest_machine.meta_pool_end,
                 (void *)GUEST_META_START);
    guest_printf("kernel image [%lx, %lx), identity mapped; direct map at %p; vmalloc space at %p\n",
                 (unsigned long)guest_machine.image_start, (unsigned long)guest_machine.image_end,
                 (void *)GUEST_DIRECT_MAP, (void *)GUEST_VMALLOC_START);

    char what[32];
    if (cmdline_has("kmm.misuse", what, sizeof what))
        misuse(what);
    bool fail = cmdline_has("kmm.fail", NULL, 0);
    struct kmm *mm = run_all(4096, true, fail);
    guest_fault_mm = NULL;   /* the fault handler must not ask a destroyed memory system */
    kmm_destroy(mm);
    /* the same cases on 16 KiB pages, but those that need the guest's hooks at 4 KiB */
    mm = run_all(16384, false, false);
    guest_fault_mm = NULL;
    kmm_destroy(mm);

    if (!cmdline_has("kmm.nofigures", NULL, 0)) {
        struct kmm_config cfg = { .area_limits = area_limits, .nr_areas = 3, .platform = &kmm_platform_guest };
        mm = kmm_create(&cfg);
        if (!mm || guest_reserve_boot_memory(mm) != 0)
            guest_panic("kmm_create for the figures failed");
        guest_figures(mm, accel);
        if (kmm_check(mm) != 0)
            failed++, guest_printf("FAIL kmm_check after the figures\n");
        kmm_destroy(mm);
    }
    struct guest_paging_stats ps;
    struct guest_platform_stats pls;
    guest_paging_stats(&ps);
    guest_platform_stats(&pls);
    guest_printf("platform: %lu of %lu page tables used, %lu invlpg, %lu full flushes; metadata frames in use "
                 "%lu KiB of %lu MiB; vmalloc space: %lu free ranges, %lu bytes lost\n",
                 (unsigned long)ps.tables_used, (unsigned long)ps.tables_total, (unsigned long)ps.invlpg,
                 (unsigned long)ps.full_flushes, (unsigned long)(pls.meta_bytes_in_use >> 10),
                 (unsigned long)(pls.meta_pool_bytes >> 20), (unsigned long)pls.vmalloc_free_ranges,
                 (unsigned long)pls.vmalloc_dropped_bytes);
    guest_printf("%u passed, %u failed\n", passed, failed);
    return failed ? GUEST_EXIT_FAIL : GUEST_EXIT_PASS;
}
