/* report.c - diagnostics: messages, refused calls, fatal errors.
 *
 * Every detected misuse or corruption goes through kmm__fatal(), one place,
 * with a message that names the call, the address and what was wrong. The
 * messages are built by hand because the core has no snprintf. */
#include "internal.h"

void kmm__msg_str(struct kmm_msg *m, const char *s)
{
    while (*s && m->len + 1 < sizeof(m->buf))
        m->buf[m->len++] = *s++;
    m->buf[m->len] = '\0';
}

void kmm__msg_hex(struct kmm_msg *m, uint64_t v)
{
    char tmp[19];
    int i = 18;
    tmp[i] = '\0';
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    kmm__msg_str(m, tmp + i);
}

void kmm__msg_dec(struct kmm_msg *m, uint64_t v)
{
    char tmp[21];
    int i = 20;
    tmp[i] = '\0';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    kmm__msg_str(m, tmp + i);
}

void kmm__report(struct kmm *mm, struct kmm_msg *m)
{
    if (mm->pf->report)
        mm->pf->report(mm->ctx, m->buf);
}

void kmm__fatal(struct kmm *mm, struct kmm_msg *m)
{
    mm->pf->fatal(mm->ctx, m->buf);
    __builtin_trap();   /* a platform's fatal hook must not return */
}

void kmm__msg_call(struct kmm_msg *m, const char *fn, const char *why, const void *addr)
{
    kmm__msg_str(m, "kmm: ");
    kmm__msg_str(m, fn);
    kmm__msg_str(m, ": ");
    kmm__msg_str(m, why);
    kmm__msg_str(m, " ");
    kmm__msg_hex(m, (uint64_t)(uintptr_t)addr);
}

void kmm__fatal_page(struct kmm *mm, const char *fn, const char *why, const void *addr)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_call(&m, fn, why, addr);
    uint64_t pfn = virt_to_pfn(mm, addr);
    if (pfn != UINT64_MAX) {
        kmm__msg_str(&m, " (phys ");
        kmm__msg_hex(&m, ((uint64_t)((uintptr_t)addr - mm->direct_map)));
        kmm__msg_str(&m, ")");
    }
    kmm__fatal(mm, &m);
}

/* The rule (README "Errors"): why is given for EINVAL, a bad argument (one
 * line: the caller has a bug to find), and for ENOMEM only when a
 * configured limit refused, not a lack of memory (the program cannot see
 * the limit from its call). Out of memory and sizes too large to serve are
 * silent: a program may probe. fn is the public function the caller called. */
void kmm__refuse(struct kmm *mm, int err, const char *fn, const char *why)
{
    if (why) {
        struct kmm_msg m = { .len = 0 };
        kmm__msg_str(&m, "kmm: ");
        kmm__msg_str(&m, fn);
        kmm__msg_str(&m, ": ");
        kmm__msg_str(&m, why);
        kmm__report(mm, &m);
    }
    if (mm->pf->error)
        mm->pf->error(err);
}

int kmm__check_fail(struct kmm *mm, const char *what, uint64_t pfn)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm_check: ");
    kmm__msg_str(&m, what);
    if (pfn != UINT64_MAX) {
        kmm__msg_str(&m, " at phys ");
        kmm__msg_hex(&m, pfn << mm->page_shift);
    }
    kmm__report(mm, &m);
    return -1;
}

void kmm__not_live(struct kmm *mm, const char *fn)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: ");
    kmm__msg_str(&m, fn);
    kmm__msg_str(&m, ": memory system ");
    kmm__msg_hex(&m, (uint64_t)(uintptr_t)mm);
    if (__atomic_load_n(&mm->live, __ATOMIC_ACQUIRE) == KMM_DEAD) {
        /* the tombstone keeps pf; the context closed with the memory */
        kmm__msg_str(&m, " was destroyed (used after kmm_destroy)");
        mm->pf->fatal(NULL, m.buf);
    } else {
        /* nothing here can be trusted to report through */
        kmm__msg_str(&m, " is not a live memory system (not from kmm_create, or its memory was reused)");
#if KMM_HOSTED
        kmm_platform_hosted.fatal(NULL, m.buf);
#endif
    }
    __builtin_trap();
}
