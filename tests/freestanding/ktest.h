/* ktest.h - test cases that run freestanding: the same code runs in the
 * user-space test_freestanding (static platform, over a static buffer) and
 * in the guest kernel (guest platform, over the firmware's memory and real
 * page tables). Only <kmm.h> and the compiler's own headers; the runner
 * supplies ktest_fail and the environment.
 *
 * A case gets a memory system and what it needs to know of its machine. It
 * reports each broken expectation with KT_EXPECT, leaves the memory system as
 * it found it (the runner calls kmm_drain and kmm_check after every case;
 * the case compares free pages itself, after a warm-up where a layer's first
 * use takes metadata pages for good), and may skip what its platform cannot
 * do. */
#ifndef KMM_KTEST_H
#define KMM_KTEST_H

#include <kmm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A physical range [start, end). */
struct ktest_range {
    kmm_phys_t start, end;
};

struct ktest_env {
    struct kmm *mm;
    size_t page_size;
    const uint64_t *area_limits;   /* upper bounds of the areas, physical addresses */
    unsigned nr_areas;
    uintptr_t direct_map;          /* virtual address of physical 0 (0: identity) */
    bool has_vm;                   /* kmm_vmalloc works (virtual memory hooks) */
    bool has_unmapped;             /* pages can leave the direct map (direct_unmap) */
    /* A physical range that is not memory (a firmware hole): reserving it is
     * refused. end == start: none known. */
    kmm_phys_t hole_start, hole_end;
    /* Optional: one write / read at p; -1 when it faulted and the platform
     * caught it (guest: the #PF handler's fixup). NULL: faults are fatal. */
    int (*probe_write)(void *p);
    int (*probe_read)(const void *p);
    /* Optional: the words the platform had for the last caught fault. */
    const char *(*last_fault)(void);
    /* Optional, where a firmware described the machine (guest): its ranges
     * that are not usable memory, as it gave them (unaligned, possibly
     * beyond the last memory), and the kernel image, reserved at boot.
     * nr_firmware_reserved 0 / image.end == image.start: none known. */
    const struct ktest_range *firmware_reserved;
    unsigned nr_firmware_reserved;
    struct ktest_range image;
    /* Where the platform keeps kmm's metadata, if it keeps it out of the
     * direct map (guest: the metadata pool); end == start: not known. */
    struct ktest_range metadata;
};

/* Supplied by the runner: one broken expectation. */
void ktest_fail(const char *file, int line, const char *expr);
#define KT_EXPECT(cond)                                  \
    do {                                                 \
        if (!(cond))                                     \
            ktest_fail(__FILE__, __LINE__, #cond);       \
    } while (0)

struct ktest {
    const char *name;
    void (*run)(const struct ktest_env *env);
    bool guest_only;               /* needs the guest platform: skipped elsewhere */
    bool needs_vm;                 /* needs kmm_vmalloc: skipped where env->has_vm is false */
};

/* Did the last caught fault's words mention word? (No libc: no strstr.) */
static inline bool ktest_fault_mentions(const struct ktest_env *env, const char *word)
{
    const char *s = env->last_fault ? env->last_fault() : NULL;
    for (; s && *s; s++) {
        size_t i = 0;
        while (word[i] && s[i] == word[i])
            i++;
        if (!word[i])
            return true;
    }
    return false;
}

/* The cases, a table per file (each ended by a { NULL } entry), and all of
 * them in the order they run (ended by NULL): ktest_cases.c. */
extern const struct ktest ktest_cases_pages[], ktest_cases_malloc[], ktest_cases_vm[], ktest_cases_guest[];
extern const struct ktest *const ktest_suites[];

/* Small helpers for the cases (ktest_cases.c). */
void ktest_fill(void *p, size_t len, uint64_t seed);          /* a pattern from seed */
bool ktest_verify(const void *p, size_t len, uint64_t seed);  /* still that pattern? */

#endif
