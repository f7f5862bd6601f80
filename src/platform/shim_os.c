/* shim_os.c - the operating system, for libkmm-malloc (src/shim/).
 *
 * The shim's few needs of Linux and the C library, so that nothing in
 * src/shim/ calls them: the environment, a line on stderr, address space
 * that is never accessible, a SIGSEGV explainer, an exit hook, errno.
 * Each is safe before the C library's constructors have run, and none
 * allocates.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim/shim_internal.h"

extern char **environ;

const char *kmm__os_getenv(const char *name)
{
    /* environ directly: getenv is fine too, but this cannot change */
    size_t len = strlen(name);
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, name, len) && (*e)[len] == '=')
            return *e + len + 1;
    return NULL;
}

void kmm__os_say(const char *line)
{
    size_t len = strlen(line);
    (void)!write(2, line, len);
    (void)!write(2, "\n", 1);
}

void *kmm__os_reserve_none(size_t len)
{
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void (*explainer)(const void *addr);

static void on_fault(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    int saved = errno;
    explainer(si->si_addr);
    /* the default action, at once: the fault repeats when we return */
    signal(sig, SIG_DFL);
    errno = saved;
}

void kmm__os_fault_explainer(void (*fn)(const void *addr))
{
    explainer = fn;
    int sigs[] = { SIGSEGV, SIGBUS };
    for (unsigned i = 0; i < 2; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) != 0 || (old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL)
            continue;   /* the program's own handler stays */
        struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER };
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

static void (*exit_fn)(void);

static void run_exit_fn(void)
{
    if (exit_fn)
        exit_fn();
}

void kmm__os_at_exit(void (*fn)(void))
{
    exit_fn = fn;
    atexit(run_exit_fn);
}

long kmm__os_thread_id(void)
{
    return syscall(SYS_gettid);
}

void kmm__os_set_errno(int err)
{
    errno = err;
}

uint64_t kmm__os_random64(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == sizeof(r))
        return r;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&r;
}

void kmm__os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    pthread_atfork(prepare, parent, child);
}

int kmm__os_keep_stderr(void)
{
    int fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
    return fd >= 0 ? fd : 2;
}

void kmm__os_write(int fd, const char *s)
{
    (void)!write(fd, s, strlen(s));
}

long kmm__os_pid(void)
{
    return getpid();
}
