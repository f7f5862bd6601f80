#include "kmm_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int kmm_test_expect_abort(void (*fn)(void *arg), void *arg, const char *needle)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        fn(arg);
        _exit(0);   /* did not abort: the parent reports it */
    }
    close(fds[1]);
    char out[8192];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out + len, sizeof(out) - 1 - len)) > 0)
        len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
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

uint64_t kmm_test_seed(const char *test_name)
{
    const char *s = getenv("KMM_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    if (!seed)
        seed = 1;
    printf("%s: seed %llu (set KMM_SEED to repeat)\n", test_name, (unsigned long long)seed);
    return seed;
}
