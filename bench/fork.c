/* bench/fork.c - what fork() costs with kmm (docs/decisions.md, "fork").
 *
 * kmm's direct map is a shared mapping of its memfd, so a fork copies every
 * resident byte for the child (in the parent's atfork prepare handler) and
 * remaps the child's mappings onto the copy; glibc's malloc lets the kernel
 * share its private pages copy-on-write. Measured, each the median of
 * several repetitions, in ms from fork() to the parent's waitpid() of a
 * child that _exits at once:
 *   1. kmm with 0, 256 MiB and 1 GiB resident (written kmm_alloc_pages
 *      blocks) against glibc malloc with as much written, and with no kmm;
 *   2. --copy: the ways the copy can be made, in ms per GiB: copy_file_range
 *      between the memfds, sendfile, and mmap of the copy + memcpy;
 *   3. posix_spawn of /bin/true with 1 GiB resident (no atfork handlers run:
 *      no copy), against fork + exec (pays the copy).
 * Usage: bench/fork [--copy] [--reps N]
 */
#include <kmm.h>

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
#include <unistd.h>

const char harness_prog[] = "bench/fork";
extern char **environ;

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)
#define CHUNK (4 * MiB)   /* order-10 blocks of 4 KiB pages */

static int reps = 7;

static void wait_for(pid_t pid)
{
    int status;
    if (pid < 0)
        die_errno("fork");
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("child failed");
}

/* ms from fork() to the child's exit, seen by the parent. */
static struct fig time_fork(bool exec)
{
    double v[64];
    for (int r = 0; r < reps; r++) {
        double t = now_ns();
        pid_t pid = fork();
        if (pid == 0) {
            if (exec)
                execl("/bin/true", "true", (char *)NULL);
            _exit(0);
        }
        wait_for(pid);
        v[r] = (now_ns() - t) / 1e6;
    }
    return summarize(v, reps);
}

static struct fig time_spawn(void)
{
    double v[64];
    char arg0[] = "true", *argv[] = { arg0, NULL };
    for (int r = 0; r < reps; r++) {
        double t = now_ns();
        pid_t pid;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ) != 0)
            die("posix_spawn");
        wait_for(pid);
        v[r] = (now_ns() - t) / 1e6;
    }
    return summarize(v, reps);
}

static void row(const char *what, size_t resident, struct fig f)
{
    printf("%-34s %6zu MiB  %9.2f ms  (min %.2f, max %.2f)\n", what, resident / MiB, f.med, f.min, f.max);
}

static void fork_rows(void)
{
    static const size_t sizes[] = { 0, 256 * MiB, 1 * GiB };
    printf("fork to child exit, median of %d:\n", reps);
    row("no kmm memory system, no malloc", 0, time_fork(false));
    for (unsigned i = 0; i < 3; i++) {
        size_t size = sizes[i], n = size / CHUNK;
        struct kmm_config cfg = { .mem_size = 4 * GiB };
        struct kmm *mm = kmm_create(&cfg);
        if (!mm)
            die_errno("kmm_create");
        void **blocks = calloc(n + 1, sizeof(void *));
        for (size_t b = 0; b < n; b++) {
            blocks[b] = kmm_alloc_pages(mm, 10, 0);
            if (!blocks[b])
                die("kmm_alloc_pages");
            memset(blocks[b], (int)b | 1, CHUNK);
        }
        row("kmm (kmm_alloc_pages, written)", size, time_fork(false));
        if (size == GiB) {
            row("kmm: fork + exec /bin/true", size, time_fork(true));
            row("kmm: posix_spawn /bin/true", size, time_spawn());
        }
        for (size_t b = 0; b < n; b++)
            kmm_free_pages(mm, blocks[b]);
        free(blocks);
        kmm_destroy(mm);

        char *p = size ? malloc(size) : NULL;
        if (size && !p)
            die("malloc");
        if (p)
            memset(p, 1, size);
        row("glibc malloc (written)", size, time_fork(false));
        free(p);
    }
}

/* ---- how to copy ------------------------------------------------------------ */

static int filled_memfd(size_t size)
{
    int fd = memfd_create("bench-fork", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)size) != 0)
        die_errno("memfd");
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die_errno("mmap");
    memset(p, 7, size);
    munmap(p, size);
    return fd;
}

static void copy_rows(void)
{
    size_t size = 1 * GiB;
    int from = filled_memfd(size);
    char *src = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, from, 0);
    if (src == MAP_FAILED)
        die_errno("mmap");
    static const char *const names[] = { "copy_file_range", "sendfile", "mmap + memcpy" };
    printf("copying 1 GiB resident into a new memfd, ms per GiB, median of %d:\n", reps);
    for (int how = 0; how < 3; how++) {
        double v[64];
        for (int r = 0; r < reps; r++) {
            int to = memfd_create("bench-fork-copy", MFD_CLOEXEC);
            if (to < 0 || ftruncate(to, (off_t)size) != 0)
                die_errno("memfd");
            double t = now_ns();
            if (how == 0) {
                for (off_t in = 0, out = 0; (size_t)in < size;)
                    if (copy_file_range(from, &in, to, &out, size - (size_t)in, 0) <= 0)
                        die_errno("copy_file_range");
            } else if (how == 1) {
                for (off_t in = 0; (size_t)in < size;) {
                    if (lseek(to, in, SEEK_SET) < 0)
                        die_errno("lseek");
                    if (sendfile(to, from, &in, size - (size_t)in) <= 0)
                        die_errno("sendfile");
                }
            } else {
                char *dst = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, to, 0);
                if (dst == MAP_FAILED)
                    die_errno("mmap");
                memcpy(dst, src, size);
                munmap(dst, size);
            }
            v[r] = (now_ns() - t) / 1e6;
            close(to);
        }
        struct fig f = summarize(v, reps);
        printf("%-34s %9.1f ms  (min %.1f, max %.1f)\n", names[how], f.med, f.min, f.max);
    }
    munmap(src, size);
    close(from);
}

int main(int argc, char **argv)
{
    bool copy = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--copy"))
            copy = true;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = (int)parse_long(argv[++i], "repetitions");
        else
            die("usage: bench/fork [--copy] [--reps N]");
    }
    if (reps > 64)
        reps = 64;
    if (copy)
        copy_rows();
    else
        fork_rows();
    return 0;
}
