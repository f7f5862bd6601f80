#include "kmm_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

size_t kmm_test_page_sizes[3] = { 4096, 16384, 65536 };

int kmm_test_run_child(void (*fn)(void *arg), void *arg, char *out, size_t outsz)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        struct rlimit none = { 0, 0 };
        setrlimit(RLIMIT_CORE, &none);
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(arg);
        _exit(0);   /* did not die: the parent reports it */
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len + 1 < outsz && (n = read(fds[0], out + len, outsz - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

void kmm_test_describe_child(int status, const char *out)
{
    if (status == -1)
        fprintf(stderr, "the child could not be started\n");
    else if (WIFSIGNALED(status))
        fprintf(stderr, "child died of signal %d; stderr:\n%s\n", WTERMSIG(status), out);
    else
        fprintf(stderr, "child exited with %d; stderr:\n%s\n", WEXITSTATUS(status), out);
}

int kmm_test_expect_abort(void (*fn)(void *arg), void *arg, const char *needle)
{
    char out[8192];
    int status = kmm_test_run_child(fn, arg, out, sizeof out);
    if (status == -1)
        return -1;
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
        fprintf(stderr, "expected an abort with \"%s\"; child %s %d; stderr: %s\n", needle,
                WIFSIGNALED(status) ? "died of signal" : "exited with", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out);
        return -1;
    }
    if (needle && !strstr(out, needle)) {
        fprintf(stderr, "abort message lacks \"%s\": %s\n", needle, out);
        return -1;
    }
    return 0;
}

struct kmm *kmm_test_create(size_t page_size, uint64_t mem_size)
{
    struct kmm_config cfg = { .page_size = page_size, .mem_size = mem_size };
    struct kmm *mm = kmm_create(&cfg);
    if (!mm) {
        perror("kmm_create");
        abort();
    }
    return mm;
}

size_t kmm_test_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static void (*fail_head)(FILE *f);
static void (*fail_tail)(FILE *f);
static bool fail_abort;

void kmm_test_on_fail(void (*head)(FILE *f), void (*tail)(FILE *f), bool use_abort)
{
    fail_head = head;
    fail_tail = tail;
    fail_abort = use_abort;
}

void kmm_test_fail(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    if (fail_head)
        fail_head(stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (fail_tail)
        fail_tail(stderr);
    if (fail_abort)
        abort();
    exit(1);
}

uint64_t kmm_test_seed(const char *test_name)
{
    const char *s = getenv("KMM_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (!seed)
        seed = 1;
    printf("%s: seed %llu (set KMM_SEED to repeat)\n", test_name, (unsigned long long)seed);
    return seed;
}

void kmm_test_fill_sampled(unsigned char *p, uint64_t key, size_t size, const struct kmm_test_sampling *s)
{
    for (size_t i = 0; i < size; i = kmm_test_next_sampled(size, i + 1, s->ps, s->full, s->edge))
        p[i] = kmm_test_pat(key, i);
}

size_t kmm_test_find_unlike(const unsigned char *p, uint64_t key, size_t size, size_t len,
                            const struct kmm_test_sampling *s)
{
    for (size_t i = 0; i < len && i < size; i = kmm_test_next_sampled(size, i + 1, s->ps, s->full, s->edge))
        if (p[i] != kmm_test_pat(key, i))
            return i;
    return SIZE_MAX;
}

size_t kmm_test_find_nonzero(const unsigned char *p, size_t from, size_t to, const struct kmm_test_sampling *s)
{
    for (size_t i = from; i < to; i = kmm_test_next_sampled(to, i + 1, s->ps, s->full, s->edge))
        if (p[i])
            return i;
    return SIZE_MAX;
}

void kmm_test_start_threads(pthread_t *th, unsigned n, void *(*fn)(void *), void *args, size_t stride)
{
    for (unsigned i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, (char *)args + (size_t)i * stride) != 0)
            kmm_test_fail("pthread_create failed");
}

void kmm_test_join_threads(const pthread_t *th, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

size_t kmm_test_span_io(unsigned char *p, uint64_t key, size_t from, size_t to, bool write)
{
    size_t off = from;
    while (off < to) {
        size_t wo = off & 7, n = 8 - wo;
        if (n > to - off)
            n = to - off;
        uint64_t w = kmm_test_pat_word(key, off >> 3);
        const unsigned char *src = (const unsigned char *)&w + wo;
        if (write) {
            memcpy(p + off, src, n);   /* whole words: a fixed-size copy the compiler inlines */
        } else if (memcmp(p + off, src, n) != 0) {
            for (size_t i = 0; i < n; i++)
                if (p[off + i] != src[i])
                    return off + i;
        }
        off += n;
    }
    return SIZE_MAX;
}

void kmm_test_capture_begin(struct kmm_test_capture *c)
{
    fflush(stderr);
    c->f = tmpfile();
    c->saved = c->f ? dup(STDERR_FILENO) : -1;
    if (!c->f || c->saved < 0 || dup2(fileno(c->f), STDERR_FILENO) < 0) {
        perror("kmm_test_capture_begin");
        abort();
    }
}

char *kmm_test_capture_end(struct kmm_test_capture *c)
{
    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    long len = lseek(fileno(c->f), 0, SEEK_END);
    if (len < 0)
        len = 0;
    char *buf = calloc((size_t)len + 1, 1);
    if (!buf)
        abort();
    ssize_t got = pread(fileno(c->f), buf, (size_t)len, 0);
    buf[got > 0 && got <= len ? got : 0] = '\0';
    fclose(c->f);
    return buf;
}

void kmm_test_fill(void *p, size_t len, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < len; i++)
        c[i] = kmm_test_fill_byte(i, seed);
}

bool kmm_test_filled(const void *p, size_t len, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < len; i++) {
        if (c[i] != kmm_test_fill_byte(i, seed)) {
            fprintf(stderr, "%p: byte %zu of %zu is %#x, expected %#x\n", p, i, len, c[i], kmm_test_fill_byte(i, seed));
            return false;
        }
    }
    return true;
}

size_t kmm_test_direct_map_vmas(struct kmm *mm)
{
    struct kmm_page_stats ps;
    kmm_page_stats(mm, &ps);
    uintptr_t lo = (uintptr_t)kmm_phys_to_virt(mm, ps.area[0].start);
    uintptr_t hi = (uintptr_t)kmm_phys_to_virt(mm, ps.area[ps.nr_areas - 1].end - ps.page_size) + ps.page_size;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        kmm_test_fail("cannot read /proc/self/maps");
    char line[512];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long s, e;
        if (sscanf(line, "%llx-%llx", &s, &e) == 2 && s < hi && e > lo)
            n++;
    }
    fclose(f);
    return n;
}
