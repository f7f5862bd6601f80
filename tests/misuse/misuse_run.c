/* misuse_run - runs one misuse program under an allocator and says what
 * happened.
 *
 *   misuse_run [--preload LIB] [--env NAME=VALUE]... [--expect EXPECTATION] PROGRAM
 *   misuse_run [--preload LIB] [--env NAME=VALUE]... --table cases.list --mode default|hardened PROGRAM
 *
 * The program runs in a child with LD_PRELOAD=LIB and the given variables,
 * its stderr captured, no core dump, killed after TIMEOUT_SECONDS. Its end
 * is classified as one of these outcomes:
 *
 *   caught+addr  killed by a signal (SIGABRT, SIGSEGV, SIGBUS, SIGILL,
 *                SIGTRAP), and a line of stderr names the misused address
 *   caught       killed by such a signal, no address named
 *   exit0        ran to its end
 *   broken       exit status 1 (CASE_BROKEN: a promise did not hold)
 *   n/a          exit status 3 (the allocator lacks the function)
 *   exitN, signalN, timeout   anything else
 *
 * "Names the address": the program writes "misuse at 0x..." before the bad
 * call; another line of stderr must hold a hexadecimal number within a page
 * of it (the pointer itself, or the object around it). A program that
 * announces nothing is named by any hexadecimal number of 4 digits or more.
 *
 * Without --expect, misuse_run prints "<outcome>\t<the allocator's first
 * line>" and exits 0 (bench/misuse/compare uses this). With --expect it
 * exits 0 when the outcome is the expected one, else prints what it saw and
 * exits 1. Expectations (kmm's own messages):
 *
 *   abort:REGEX  SIGABRT, and a line starting "kmm: " that matches REGEX
 *                (extended, case-insensitive) and names the address
 *   segv:REGEX   SIGSEGV or SIGBUS, and a line starting "kmm: segmentation
 *                fault at " that matches REGEX and names the address
 *   exit0        ran to its end
 *   miss         not caught in this mode: ran to its end, with status 0 or
 *                CASE_BROKEN
 *
 * --table takes the expectation from cases.list: the row named after the
 * program, the column of the mode.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <regex.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_SECONDS 20
#define MAX_ENV 16
#define MAX_STDERR (64 * 1024)
#define ANNOUNCE "misuse at "
#define NEAR_BYTES 4096

struct run {
    char err[MAX_STDERR + 1];
    size_t err_len;
    bool timed_out;
    int status;
    bool announced;
    uintptr_t address;
};

static void die(const char *what)
{
    fprintf(stderr, "misuse_run: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void run_child(const char *program, const char *preload, char **env, int nenv, struct run *r)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        die("pipe");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
        dup2(pipefd[1], STDERR_FILENO);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, STDOUT_FILENO);
        /* the allocator is the one asked for, never one inherited */
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        for (int i = 0; i < nenv; i++)
            putenv(env[i]);
        execl(program, program, (char *)NULL);
        fprintf(stderr, "misuse_run: exec %s: %s\n", program, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    double deadline = now_seconds() + TIMEOUT_SECONDS;
    for (;;) {
        int left_ms = (int)((deadline - now_seconds()) * 1000);
        if (left_ms <= 0) {
            r->timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };
        int n = poll(&pfd, 1, left_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        char buf[4096];
        ssize_t got = read(pipefd[0], buf, sizeof(buf));
        if (got <= 0)
            break;
        size_t keep = (size_t)got;
        if (keep > MAX_STDERR - r->err_len)
            keep = MAX_STDERR - r->err_len;
        memcpy(r->err + r->err_len, buf, keep);
        r->err_len += keep;
    }
    close(pipefd[0]);
    r->err[r->err_len] = '\0';
    while (waitpid(pid, &r->status, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    const char *a = strstr(r->err, ANNOUNCE);
    if (a) {
        r->announced = true;
        r->address = (uintptr_t)strtoull(a + strlen(ANNOUNCE), NULL, 16);
    }
}

/* Whether line [s, end) holds a hexadecimal number naming the address. */
static bool line_names_address(const struct run *r, const char *s, const char *end)
{
    for (const char *p = s; p + 2 < end; p++) {
        if (p[0] != '0' || p[1] != 'x')
            continue;
        char *stop;
        uintptr_t v = (uintptr_t)strtoull(p + 2, &stop, 16);
        size_t digits = (size_t)(stop - (p + 2));
        if (digits == 0)
            continue;
        if (!r->announced) {
            if (digits >= 4)
                return true;
        } else if (v + NEAR_BYTES >= r->address && v <= r->address + NEAR_BYTES) {
            return true;
        }
    }
    return false;
}

static bool is_announce(const char *s)
{
    return strncmp(s, ANNOUNCE, strlen(ANNOUNCE)) == 0;
}

/* Calls fn on every line of stderr but the announcement, until it says stop. */
static const char *find_line(const struct run *r, bool (*fn)(const struct run *, const char *, const char *, const void *),
                             const void *arg)
{
    const char *s = r->err;
    while (*s) {
        const char *end = strchr(s, '\n');
        if (!end)
            end = s + strlen(s);
        if (!is_announce(s) && fn(r, s, end, arg))
            return s;
        s = *end ? end + 1 : end;
    }
    return NULL;
}

static bool any_naming(const struct run *r, const char *s, const char *end, const void *arg)
{
    (void)arg;
    return line_names_address(r, s, end);
}

static bool any_line(const struct run *r, const char *s, const char *end, const void *arg)
{
    (void)r; (void)arg;
    return end > s;
}

struct kmm_line {
    const char *prefix;
    regex_t *reason;
};

static bool kmm_line_matches(const struct run *r, const char *s, const char *end, const void *arg)
{
    const struct kmm_line *k = arg;
    if (strncmp(s, k->prefix, strlen(k->prefix)) != 0)
        return false;
    char line[1024];
    size_t len = (size_t)(end - s) < sizeof(line) - 1 ? (size_t)(end - s) : sizeof(line) - 1;
    memcpy(line, s, len);
    line[len] = '\0';
    return regexec(k->reason, line, 0, NULL, 0) == 0 && line_names_address(r, s, end);
}

static bool caught_by_signal(int status)
{
    if (!WIFSIGNALED(status))
        return false;
    int sig = WTERMSIG(status);
    return sig == SIGABRT || sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGTRAP;
}

static void outcome(const struct run *r, char *out, size_t size)
{
    if (r->timed_out)
        snprintf(out, size, "timeout");
    else if (caught_by_signal(r->status))
        snprintf(out, size, "%s", find_line(r, any_naming, NULL) ? "caught+addr" : "caught");
    else if (WIFSIGNALED(r->status))
        snprintf(out, size, "signal%d", WTERMSIG(r->status));
    else if (WEXITSTATUS(r->status) == 0)
        snprintf(out, size, "exit0");
    else if (WEXITSTATUS(r->status) == 1)
        snprintf(out, size, "broken");
    else if (WEXITSTATUS(r->status) == 3)
        snprintf(out, size, "n/a");
    else
        snprintf(out, size, "exit%d", WEXITSTATUS(r->status));
}

/* Whether the run is what expect says; why not in *why. */
static bool as_expected(const struct run *r, const char *expect, const char **why)
{
    if (r->timed_out) {
        *why = "timed out";
        return false;
    }
    if (!strcmp(expect, "exit0")) {
        *why = "expected the program to run to its end with status 0";
        return WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
    }
    if (!strcmp(expect, "miss")) {
        *why = "expected no detection in this mode (status 0 or 1); if it is caught now, update cases.list";
        return WIFEXITED(r->status) && (WEXITSTATUS(r->status) == 0 || WEXITSTATUS(r->status) == 1);
    }
    bool abort_kind = !strncmp(expect, "abort:", 6);
    bool segv_kind = !strncmp(expect, "segv:", 5);
    if (!abort_kind && !segv_kind) {
        fprintf(stderr, "misuse_run: unknown expectation '%s'\n", expect);
        exit(2);
    }
    if (abort_kind && !(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT)) {
        *why = "expected SIGABRT";
        return false;
    }
    if (segv_kind && !(WIFSIGNALED(r->status) && (WTERMSIG(r->status) == SIGSEGV || WTERMSIG(r->status) == SIGBUS))) {
        *why = "expected SIGSEGV";
        return false;
    }
    regex_t reason;
    if (regcomp(&reason, strchr(expect, ':') + 1, REG_EXTENDED | REG_ICASE | REG_NOSUB) != 0) {
        fprintf(stderr, "misuse_run: bad regular expression in '%s'\n", expect);
        exit(2);
    }
    struct kmm_line k = { abort_kind ? "kmm: " : "kmm: segmentation fault at ", &reason };
    bool ok = find_line(r, kmm_line_matches, &k) != NULL;
    regfree(&reason);
    *why = abort_kind ? "expected a \"kmm: \" line with the reason and the address"
                      : "expected a \"kmm: segmentation fault at \" line with the reason and the address";
    return ok;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* The expectation for program in the table's column for mode. */
static char *expectation_from_table(const char *table, const char *mode, const char *program)
{
    int column = !strcmp(mode, "default") ? 2 : !strcmp(mode, "hardened") ? 3 : -1;
    if (column < 0) {
        fprintf(stderr, "misuse_run: unknown mode '%s' (default or hardened)\n", mode);
        exit(2);
    }
    FILE *f = fopen(table, "r");
    if (!f)
        die(table);
    const char *name = strrchr(program, '/') ? strrchr(program, '/') + 1 : program;
    static char line[1024];
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *fields[4] = { NULL };
        char *rest = line;
        for (int i = 0; i < 4 && rest; i++)
            fields[i] = trim(strsep(&rest, ";"));
        if (fields[3] && !strcmp(fields[0], name)) {
            fclose(f);
            return fields[column];
        }
    }
    fclose(f);
    fprintf(stderr, "misuse_run: %s has no row in %s\n", name, table);
    exit(2);
}

static void usage(void)
{
    fprintf(stderr, "usage: misuse_run [--preload LIB] [--env NAME=VALUE]... [--expect EXPECTATION | --table FILE --mode MODE] PROGRAM\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *preload = NULL, *expect = NULL, *table = NULL, *mode = "default";
    char *env[MAX_ENV];
    int nenv = 0, i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--preload"))
            preload = argv[++i];
        else if (!strcmp(argv[i], "--expect"))
            expect = argv[++i];
        else if (!strcmp(argv[i], "--table"))
            table = argv[++i];
        else if (!strcmp(argv[i], "--mode"))
            mode = argv[++i];
        else if (!strcmp(argv[i], "--env") && nenv < MAX_ENV)
            env[nenv++] = argv[++i];
        else
            usage();
    }
    if (i != argc - 1)
        usage();
    if (table)
        expect = expectation_from_table(table, mode, argv[i]);
    static struct run r;
    run_child(argv[i], preload && *preload ? preload : NULL, env, nenv, &r);
    char seen[32];
    outcome(&r, seen, sizeof(seen));
    if (!expect) {
        const char *line = find_line(&r, any_naming, NULL);
        if (!line)
            line = find_line(&r, any_line, NULL);
        int len = line ? (int)strcspn(line, "\n") : 0;
        printf("%s\t%.*s\n", seen, len, line ? line : "");
        return 0;
    }
    const char *why = "";
    if (as_expected(&r, expect, &why)) {
        printf("as expected (%s): %s\n", expect, seen);
        return 0;
    }
    printf("NOT AS EXPECTED: %s\n  expected: %s\n  outcome:  %s\n  stderr:\n%s\n", why, expect, seen, r.err);
    return 1;
}
