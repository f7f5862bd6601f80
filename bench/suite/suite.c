/* bench/suite/suite.c - the benchmark suite's runner: whole programs under
 * glibc, jemalloc, mimalloc, tcmalloc, kmm and kmm hardened.
 *
 *     suite [--reps N] [--only w1,w2] [--allocators a1,a2] [--kmm PATH]
 *           [--data FILE] [--chart FILE] [--no-chart] [--timeout S]
 *     suite --check [--only ...] [--allocators ...]   each workload once, kmm only
 *     suite --list
 *
 * Every workload is a process of its own, started with the allocator under
 * test given by LD_PRELOAD (glibc: none). Its time is the wall time from fork
 * to wait4, its peak RSS wait4's ru_maxrss (for a workload that runs a shell
 * or a compiler driver, the largest of the processes it waited for: Linux
 * folds the children's peak into the parent's). Runs are interleaved, one of
 * every allocator in turn for a workload, then the next workload, then the
 * next repetition, so that a quiet or busy moment of the machine touches
 * every allocator alike. Each cell is the median of its repetitions.
 *
 * A run that exits nonzero, dies of a signal, outlives the timeout, or whose
 * preload the loader refused, makes its cell FAILED: the table shows it, the
 * stderr tail of the first failed run is printed below the table, it is left
 * out of the geometric means (the count left out is printed), and the exit
 * status is 1.
 *
 * See bench/suite/README.md for the workloads and how to read the figures.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KMM_SUITE_SOURCE_DIR
#error "KMM_SUITE_SOURCE_DIR (the source tree, for the python script and the files gcc compiles) must be defined"
#endif
#ifndef KMM_SUITE_LIBDIR
#error "KMM_SUITE_LIBDIR (where Debian puts libjemalloc.so.2 and the others) must be defined"
#endif

#define MAX_REPS 64
#define MAX_WORKLOADS 16
#define MAX_ALLOCATORS 8
#define STDERR_TAIL 480

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "suite: %s\n", what);
    exit(2);
}

static _Noreturn void die_errno(const char *what)
{
    fprintf(stderr, "suite: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- where things are ------------------------------------------------------- */

static char work_dir[] = "/tmp/kmm-suite.XXXXXX";   /* the workloads' current directory */
static char tool_dir[PATH_MAX];                      /* where this program and suite-workloads are */
static char workloads_program[PATH_MAX + 32];
static char sqlite_script[sizeof work_dir + 32], sqlite_db[sizeof work_dir + 32];
static char stderr_file[sizeof work_dir + 32];
static char gcc_command[4096];

static void find_tool_dir(void)
{
    ssize_t n = readlink("/proc/self/exe", tool_dir, sizeof tool_dir - 1);
    if (n < 0)
        die_errno("readlink /proc/self/exe");
    tool_dir[n] = 0;
    char *slash = strrchr(tool_dir, '/');
    if (slash)
        *slash = 0;
    snprintf(workloads_program, sizeof workloads_program, "%s/suite-workloads", tool_dir);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

static void remove_work_dir(void)
{
    nftw(work_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- the real programs' inputs -------------------------------------------------- */

/* The sqlite3 workload's script: a few thousand single-row inserts in
 * transactions (each statement parsed and planned on its own, as an
 * application's would be), an index, queries that sort and group, updates,
 * a delete of half the rows and a VACUUM. Written once per suite run; the
 * database file is removed before every run. */
static void write_sqlite_script(void)
{
    FILE *f = fopen(sqlite_script, "w");
    if (!f)
        die_errno("cannot write the sqlite3 script");
    /* No fsync: the disk is not what is measured. */
    fputs("PRAGMA journal_mode=DELETE;\nPRAGMA synchronous=OFF;\n"
          "CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, category INTEGER, price REAL, note TEXT);\n"
          "CREATE TABLE category(id INTEGER PRIMARY KEY, label TEXT);\n", f);
    for (int c = 0; c < 50; c++)
        fprintf(f, "INSERT INTO category VALUES(%d, 'category %d');\n", c, c);
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 12000; i++) {
        if (i % 500 == 0)
            fputs(i ? "COMMIT;\nBEGIN;\n" : "BEGIN;\n", f);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        fprintf(f, "INSERT INTO item(name, category, price, note) VALUES('item-%llx', %d, %d.%02d, '%.*s');\n",
                (unsigned long long)(x & 0xffffffffffull), (int)(x % 50), (int)(x >> 40) % 1000,
                (int)(x >> 20) % 100, (int)(x % 200),
                "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
                "ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco "
                "laboris nisi");
    }
    fputs("COMMIT;\n"
          "CREATE INDEX item_category ON item(category, price);\n"
          "CREATE INDEX item_name ON item(name);\n", f);
    for (int q = 0; q < 40; q++) {
        fprintf(f, "SELECT c.label, count(*), avg(i.price), max(length(i.note)) FROM item i "
                   "JOIN category c ON c.id = i.category WHERE i.price > %d GROUP BY c.label ORDER BY 3 DESC;\n",
                q * 20);
        fprintf(f, "SELECT name, price FROM item WHERE name LIKE 'item-%x%%' ORDER BY price DESC LIMIT 20;\n", q % 16);
        fprintf(f, "SELECT group_concat(name, ',') FROM (SELECT name FROM item WHERE category = %d ORDER BY name);\n",
                q % 50);
    }
    fputs("BEGIN;\n"
          "UPDATE item SET note = upper(note) || note WHERE category % 3 = 0;\n"
          "UPDATE item SET price = price * 1.1 WHERE id % 7 = 0;\n"
          "COMMIT;\n"
          "DELETE FROM item WHERE id % 2 = 0;\n"
          "VACUUM;\n"
          "SELECT count(*), sum(price) FROM item;\n"
          "PRAGMA integrity_check;\n", f);
    if (fclose(f))
        die_errno("cannot write the sqlite3 script");
}

/* The gcc workload: one gcc per file, as make runs them, -O2, kmm's own
 * sources. cc1 does the allocating; the shell, the driver and the assembler
 * run under the allocator too. */
static void make_gcc_command(void)
{
    static const char *const files[] = {"src/slab/slab.c", "src/slab/kmalloc.c", "src/core/report.c"};
    int n = snprintf(gcc_command, sizeof gcc_command, "set -e; ");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        n += snprintf(gcc_command + n, sizeof gcc_command - (size_t)n,
                      "gcc -O2 -std=c11 -D_GNU_SOURCE -DKMM_HOSTED=1 -I'%s/src' -I'%s/include' -c '%s/%s' -o out%zu.o; ",
                      KMM_SUITE_SOURCE_DIR, KMM_SUITE_SOURCE_DIR, KMM_SUITE_SOURCE_DIR, files[i], i);
    if ((size_t)n >= sizeof gcc_command)
        die("the gcc command is too long (source directory path?)");
}

static void remove_sqlite_db(void)
{
    unlink(sqlite_db);
}

/* ---- workloads and allocators --------------------------------------------------- */

struct workload {
    const char *name;
    const char *argv[8];       /* argv[0] "@" is the suite-workloads program */
    void (*before_each_run)(void);
};

static const struct workload all_workloads[] = {
    {"larson", {"@", "larson"}, NULL},
    {"cache-scratch", {"@", "cache-scratch"}, NULL},
    {"cache-thrash", {"@", "cache-thrash"}, NULL},
    {"xmalloc-test", {"@", "xmalloc-test"}, NULL},
    {"mstress", {"@", "mstress"}, NULL},
    {"glibc-thread", {"@", "glibc-thread"}, NULL},
    {"realloc-growth", {"@", "realloc-growth"}, NULL},
    {"malloc-large", {"@", "malloc-large"}, NULL},
    {"python", {"/usr/bin/python3", KMM_SUITE_SOURCE_DIR "/bench/suite/alloc_heavy.py"}, NULL},
    {"sqlite", {"sqlite3", "-batch", "-bail", sqlite_db, ".read script.sql"}, remove_sqlite_db},
    {"gcc", {"/bin/sh", "-c", gcc_command}, NULL},
};
#define N_ALL_WORKLOADS (sizeof all_workloads / sizeof all_workloads[0])

struct allocator {
    const char *name;
    const char *preload;       /* NULL: the process's own malloc, glibc's */
    const char *kmm_options;   /* KMM_OPTIONS, or NULL for none */
};

static char kmm_path[PATH_MAX];

static struct allocator all_allocators[] = {
    {"glibc", NULL, NULL},
    {"jemalloc", KMM_SUITE_LIBDIR "/libjemalloc.so.2", NULL},
    {"mimalloc", KMM_SUITE_LIBDIR "/libmimalloc.so.2", NULL},
    {"tcmalloc", KMM_SUITE_LIBDIR "/libtcmalloc_minimal.so.4", NULL},
    {"kmm", kmm_path, NULL},
    {"kmm-hardened", kmm_path, "hardened"},
};
#define N_ALL_ALLOCATORS (sizeof all_allocators / sizeof all_allocators[0])

/* ---- options -------------------------------------------------------------------- */

static struct {
    int reps, timeout_seconds;
    bool check, chart;
    const char *data_file, *chart_file;
    const struct workload *workloads[MAX_WORKLOADS];
    int n_workloads;
    const struct allocator *allocators[MAX_ALLOCATORS];
    int n_allocators;
} opt = {
    .reps = 5,
    .timeout_seconds = 120,
    .chart = true,
    .data_file = KMM_SUITE_SOURCE_DIR "/docs/figures/suite.dat",
    .chart_file = KMM_SUITE_SOURCE_DIR "/docs/figures/suite.png",
};

/* ---- one run -------------------------------------------------------------------- */

struct run {
    bool ok;
    double seconds;
    long peak_rss_kib;
    char why[96];              /* what failed: "exit 1", "signal 6 (Aborted)", ... */
    char stderr_tail[STDERR_TAIL + 1];
};

static volatile sig_atomic_t timed_out;

static void on_alarm(int sig)
{
    (void)sig;
    timed_out = 1;
}

/* The last STDERR_TAIL bytes of the run's stderr, from a line start. */
static void read_stderr_tail(char *tail)
{
    tail[0] = 0;
    int fd = open(stderr_file, O_RDONLY);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > STDERR_TAIL ? size - STDERR_TAIL : 0;
    ssize_t n = pread(fd, tail, STDERR_TAIL, from);
    close(fd);
    if (n <= 0)
        return;
    tail[n] = 0;
    char *start = tail;
    if (from > 0 && (start = strchr(tail, '\n')) != NULL)
        memmove(tail, start + 1, strlen(start + 1) + 1);
}

static void run_once(const struct workload *w, const struct allocator *a, int timeout_seconds, struct run *r)
{
    memset(r, 0, sizeof *r);
    if (a->preload && access(a->preload, R_OK) != 0) {
        snprintf(r->why, sizeof r->why, "library not found");
        snprintf(r->stderr_tail, sizeof r->stderr_tail, "%s: %s\n", a->preload, strerror(errno));
        return;
    }
    if (w->before_each_run)
        w->before_each_run();
    const char *argv[9] = {0};
    memcpy(argv, w->argv, sizeof w->argv);
    if (strcmp(argv[0], "@") == 0) {
        argv[0] = workloads_program;
        if (opt.check)
            argv[2] = "--quick";
    }

    double start = now_seconds();
    pid_t pid = fork();
    if (pid < 0)
        die_errno("fork");
    if (pid == 0) {
        setpgid(0, 0);
        int null_fd = open("/dev/null", O_RDWR);
        int err_fd = open(stderr_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (null_fd < 0 || err_fd < 0 || chdir(work_dir) != 0)
            _exit(126);
        dup2(null_fd, 0);
        dup2(null_fd, 1);
        dup2(err_fd, 2);
        if (a->preload)
            setenv("LD_PRELOAD", a->preload, 1);
        else
            unsetenv("LD_PRELOAD");
        if (a->kmm_options)
            setenv("KMM_OPTIONS", a->kmm_options, 1);
        else
            unsetenv("KMM_OPTIONS");
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "suite: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }

    /* Wait without reaping first: while the workload is a zombie its
     * process group cannot be another's, so what it left running behind it
     * can be killed by group; wait4 then reaps it and gives its rusage. */
    timed_out = 0;
    alarm((unsigned)timeout_seconds);
    siginfo_t info;
    while (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT) < 0) {
        if (errno != EINTR)
            die_errno("waitid");
        if (timed_out)
            kill(-pid, SIGKILL);
    }
    r->seconds = now_seconds() - start;
    alarm(0);
    kill(-pid, SIGKILL);
    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0)
        if (errno != EINTR)
            die_errno("wait4");
    r->peak_rss_kib = usage.ru_maxrss;

    read_stderr_tail(r->stderr_tail);
    if (timed_out)
        snprintf(r->why, sizeof r->why, "timed out after %d s", timeout_seconds);
    else if (WIFSIGNALED(status))
        snprintf(r->why, sizeof r->why, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (WEXITSTATUS(status) != 0)
        snprintf(r->why, sizeof r->why, "exit %d", WEXITSTATUS(status));
    else if (strstr(r->stderr_tail, "cannot be preloaded"))
        snprintf(r->why, sizeof r->why, "the loader refused the preload");
    else
        r->ok = true;
}

/* ---- cells: every run of one workload under one allocator ------------------------- */

struct cell {
    int runs, failures;
    double seconds[MAX_REPS];
    double rss_kib[MAX_REPS];
    struct run first_failure;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of the successful runs' figures. */
static double median(const double *v, int n)
{
    double sorted[MAX_REPS];
    memcpy(sorted, v, (size_t)n * sizeof *v);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static void cell_add(struct cell *c, const struct run *r)
{
    c->runs++;
    if (!r->ok) {
        if (c->failures++ == 0)
            c->first_failure = *r;
        return;
    }
    int ok = c->runs - c->failures - 1;
    c->seconds[ok] = r->seconds;
    c->rss_kib[ok] = (double)r->peak_rss_kib;
}

static bool cell_usable(const struct cell *c)
{
    return c->runs > 0 && c->failures == 0;
}

static _Noreturn void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: suite [--reps N] [--only w1,w2] [--allocators a1,a2] [--kmm PATH]\n"
            "             [--data FILE] [--chart FILE] [--no-chart] [--timeout SECONDS]\n"
            "       suite --check [--only ...] [--allocators ...]   each workload once under kmm\n"
            "       suite --list\n");
    exit(status);
}

/* Each comma-separated name of list, looked up among n entries of stride
 * bytes whose first member is the name; the found ones are appended to out. */
static int pick(const char *list, const void *table, size_t n, size_t stride, const void **out, int max,
                const char *what)
{
    int count = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        size_t i = 0;
        while (i < n && strcmp(*(const char *const *)((const char *)table + i * stride), name) != 0)
            i++;
        if (i == n) {
            fprintf(stderr, "suite: no %s named '%s' (suite --list names them)\n", what, name);
            exit(2);
        }
        if (count == max)
            die("too many names");
        out[count++] = (const char *)table + i * stride;
    }
    free(copy);
    if (count == 0)
        usage(2);
    return count;
}

static void list_everything(void)
{
    printf("workloads:");
    for (size_t i = 0; i < N_ALL_WORKLOADS; i++)
        printf(" %s", all_workloads[i].name);
    printf("\nallocators:");
    for (size_t i = 0; i < N_ALL_ALLOCATORS; i++)
        printf(" %s", all_allocators[i].name);
    printf("\n(see bench/suite/README.md for what each workload models)\n");
}

static void parse_options(int argc, char **argv)
{
    const char *only = NULL, *allocators = NULL;
    /* The shim of the same build: bench/suite lives in BUILD/bench. */
    char beside[PATH_MAX + 32];
    snprintf(beside, sizeof beside, "%s/../libkmm-malloc.so", tool_dir);
    if (!realpath(beside, kmm_path))
        snprintf(kmm_path, sizeof kmm_path, "%.*s", PATH_MAX - 1, beside);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes_value = true;
        if (strcmp(a, "--reps") == 0 && value) {
            opt.reps = atoi(value);
            if (opt.reps < 1 || opt.reps > MAX_REPS)
                die("--reps must be 1..64");
        } else if (strcmp(a, "--timeout") == 0 && value) {
            opt.timeout_seconds = atoi(value);
            if (opt.timeout_seconds < 1)
                die("--timeout must be at least 1 second");
        } else if (strcmp(a, "--only") == 0 && value) {
            only = value;
        } else if (strcmp(a, "--allocators") == 0 && value) {
            allocators = value;
        } else if (strcmp(a, "--kmm") == 0 && value) {
            if (!realpath(value, kmm_path))
                die_errno(value);
        } else if (strcmp(a, "--data") == 0 && value) {
            opt.data_file = value;
        } else if (strcmp(a, "--chart") == 0 && value) {
            opt.chart_file = value;
        } else {
            takes_value = false;
            if (strcmp(a, "--check") == 0)
                opt.check = true;
            else if (strcmp(a, "--no-chart") == 0)
                opt.chart = false;
            else if (strcmp(a, "--list") == 0)
                list_everything(), exit(0);
            else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
                usage(0);
            else
                usage(2);
        }
        i += takes_value;
    }
    if (opt.check && !allocators)
        allocators = "kmm";
    if (opt.check)
        opt.reps = 1;

    if (only)
        opt.n_workloads = pick(only, all_workloads, N_ALL_WORKLOADS, sizeof all_workloads[0],
                               (const void **)opt.workloads, MAX_WORKLOADS, "workload");
    else
        for (size_t i = 0; i < N_ALL_WORKLOADS; i++)
            opt.workloads[opt.n_workloads++] = &all_workloads[i];
    if (allocators)
        opt.n_allocators = pick(allocators, all_allocators, N_ALL_ALLOCATORS, sizeof all_allocators[0],
                                (const void **)opt.allocators, MAX_ALLOCATORS, "allocator");
    else
        for (size_t i = 0; i < N_ALL_ALLOCATORS; i++)
            opt.allocators[opt.n_allocators++] = &all_allocators[i];
}

/* ---- --check: each workload once, a line each ----------------------------------- */

static int check_mode(void)
{
    int failed = 0;
    for (int a = 0; a < opt.n_allocators; a++)
        for (int w = 0; w < opt.n_workloads; w++) {
            struct run r;
            run_once(opt.workloads[w], opt.allocators[a], opt.timeout_seconds, &r);
            printf("%-14s %-15s %s %6.2f s %7.1f MiB%s%s\n", opt.allocators[a]->name, opt.workloads[w]->name,
                   r.ok ? "ok    " : "FAILED", r.seconds, r.peak_rss_kib / 1024.0, r.ok ? "" : "  ", r.why);
            if (!r.ok) {
                failed++;
                printf("    stderr tail:\n%s\n", r.stderr_tail);
            }
            fflush(stdout);
        }
    printf("suite --check: %d of %d runs failed\n", failed, opt.n_allocators * opt.n_workloads);
    return failed ? 1 : 0;
}

/* ---- the full run ----------------------------------------------------------------- */

static struct cell cells[MAX_WORKLOADS][MAX_ALLOCATORS];

static int glibc_column(void)
{
    for (int a = 0; a < opt.n_allocators; a++)
        if (opt.allocators[a]->preload == NULL)
            return a;
    return -1;
}

/* The ratio of cell (w, a) to glibc's in the same workload, or NAN when
 * either failed or glibc was not run. */
static double ratio(int w, int a, bool rss)
{
    int g = glibc_column();
    if (g < 0 || !cell_usable(&cells[w][a]) || !cell_usable(&cells[w][g]))
        return NAN;
    const struct cell *c = &cells[w][a], *base = &cells[w][g];
    int n = c->runs - c->failures, nb = base->runs - base->failures;
    return rss ? median(c->rss_kib, n) / median(base->rss_kib, nb)
               : median(c->seconds, n) / median(base->seconds, nb);
}

static void print_header(void)
{
    struct utsname u;
    uname(&u);
    double load[1] = {-1};
    getloadavg(load, 1);
    time_t t = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    printf("kmm bench/suite  %s  %s %s  %ld CPUs  load %.2f\n", date, u.sysname, u.release,
           sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    printf("%d repetitions, interleaved; median wall time and peak RSS (wait4 ru_maxrss) per cell\n", opt.reps);
    for (int a = 0; a < opt.n_allocators; a++)
        printf("  %-13s %s%s%s\n", opt.allocators[a]->name,
               opt.allocators[a]->preload ? opt.allocators[a]->preload : "(no preload: the C library's malloc)",
               opt.allocators[a]->kmm_options ? "  KMM_OPTIONS=" : "",
               opt.allocators[a]->kmm_options ? opt.allocators[a]->kmm_options : "");
    fflush(stdout);
}

static void print_table(void)
{
    int g = glibc_column();
    printf("\ntime / peak RSS relative to glibc (glibc's own: seconds / MiB)\n%-15s", "workload");
    for (int a = 0; a < opt.n_allocators; a++)
        printf(" %15s", opt.allocators[a]->name);
    printf("\n");
    for (int w = 0; w < opt.n_workloads; w++) {
        printf("%-15s", opt.workloads[w]->name);
        for (int a = 0; a < opt.n_allocators; a++) {
            const struct cell *c = &cells[w][a];
            int n = c->runs - c->failures;
            double t = ratio(w, a, false), m = ratio(w, a, true);
            char text[48] = "-";
            if (!cell_usable(c))
                snprintf(text, sizeof text, "FAILED %d/%d", c->failures, c->runs);
            else if (a == g)
                snprintf(text, sizeof text, "%.2fs %5.0fM", median(c->seconds, n), median(c->rss_kib, n) / 1024);
            else if (!isnan(t))
                snprintf(text, sizeof text, "%5.2f  %5.2f", t, m);
            printf(" %15s", text);
        }
        printf("\n");
    }
    if (g < 0)
        return;
    printf("%-15s", "geomean");
    char excluded[256] = "";
    for (int a = 0; a < opt.n_allocators; a++) {
        double log_t = 0, log_m = 0;
        int n = 0;
        for (int w = 0; w < opt.n_workloads; w++) {
            double t = ratio(w, a, false), m = ratio(w, a, true);
            if (isnan(t))
                continue;
            log_t += log(t), log_m += log(m), n++;
        }
        char text[48] = "-";
        if (n > 0)
            snprintf(text, sizeof text, "%5.3f  %5.3f", exp(log_t / n), exp(log_m / n));
        printf(" %15s", text);
        if (n < opt.n_workloads)
            snprintf(excluded + strlen(excluded), sizeof excluded - strlen(excluded), " %s: %d of %d;",
                     opt.allocators[a]->name, opt.n_workloads - n, opt.n_workloads);
    }
    printf("\n");
    if (excluded[0])
        printf("workloads left out of the geometric means (failed there or under glibc):%s\n", excluded);
}

static int print_failures(void)
{
    int failed_cells = 0;
    for (int w = 0; w < opt.n_workloads; w++)
        for (int a = 0; a < opt.n_allocators; a++) {
            const struct cell *c = &cells[w][a];
            if (c->failures == 0)
                continue;
            if (failed_cells++ == 0)
                printf("\nFAILED runs (the first of each cell):\n");
            printf("%s under %s: %d of %d runs failed; the first: %s (%.2f s). stderr tail:\n%s\n",
                   opt.workloads[w]->name, opt.allocators[a]->name, c->failures, c->runs,
                   c->first_failure.why, c->first_failure.seconds,
                   c->first_failure.stderr_tail[0] ? c->first_failure.stderr_tail : "(empty)\n");
        }
    return failed_cells;
}

/* The data file: a row per workload, two columns (time, RSS relative to
 * glibc) per allocator, "?" where a cell failed; the medians themselves
 * in comments below. bench/suite/chart.gp reads it. */
/* The directory a result goes to (docs/figures at first) is made if missing;
 * its parent must exist. */
static void make_parent_dir(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mkdir(dir, 0755);
    }
}

static void write_data(void)
{
    make_parent_dir(opt.data_file);
    make_parent_dir(opt.chart_file);
    FILE *f = fopen(opt.data_file, "w");
    if (!f) {
        fprintf(stderr, "suite: cannot write %s: %s\n", opt.data_file, strerror(errno));
        return;
    }
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    double load[1] = {-1};
    getloadavg(load, 1);
    fprintf(f, "# kmm bench/suite %s, %ld CPUs, load %.2f at the end: median of %d runs, timeout %d s;\n"
               "# time and peak RSS relative to glibc; ? = failed\n",
            date, sysconf(_SC_NPROCESSORS_ONLN), load[0], opt.reps, opt.timeout_seconds);
    fprintf(f, "# workload");
    for (int a = 0; a < opt.n_allocators; a++)
        fprintf(f, " %s_time %s_rss", opt.allocators[a]->name, opt.allocators[a]->name);
    fprintf(f, "\n");
    for (int w = 0; w < opt.n_workloads; w++) {
        fprintf(f, "%s", opt.workloads[w]->name);
        for (int a = 0; a < opt.n_allocators; a++) {
            double t = ratio(w, a, false), m = ratio(w, a, true);
            if (isnan(t))
                fprintf(f, " ? ?");
            else
                fprintf(f, " %.4f %.4f", t, m);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "# medians: workload allocator seconds peak_rss_kib failed_runs/runs\n");
    for (int w = 0; w < opt.n_workloads; w++)
        for (int a = 0; a < opt.n_allocators; a++) {
            const struct cell *c = &cells[w][a];
            int n = c->runs - c->failures;
            fprintf(f, "# %s %s %.4f %.0f %d/%d\n", opt.workloads[w]->name, opt.allocators[a]->name,
                    n ? median(c->seconds, n) : NAN, n ? median(c->rss_kib, n) : NAN, c->failures, c->runs);
        }
    fclose(f);
    printf("\ndata: %s\n", opt.data_file);
}

static bool draw_chart(void)
{
    char names[256] = "";
    for (int a = 0; a < opt.n_allocators; a++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", a ? " " : "",
                 opt.allocators[a]->name);
    char command[PATH_MAX * 3 + 512];
    snprintf(command, sizeof command,
             "gnuplot -e \"datafile='%s'; output='%s'; allocators='%s'\" '%s/bench/suite/chart.gp'",
             opt.data_file, opt.chart_file, names, KMM_SUITE_SOURCE_DIR);
    int status = system(command);
    if (status != 0) {
        fprintf(stderr, "suite: gnuplot failed (is gnuplot-nox installed?): %s\n", command);
        return false;
    }
    printf("chart: %s\n", opt.chart_file);
    return true;
}

static int full_mode(void)
{
    print_header();
    for (int rep = 0; rep < opt.reps; rep++)
        for (int w = 0; w < opt.n_workloads; w++) {
            fprintf(stderr, "rep %d/%d %-15s", rep + 1, opt.reps, opt.workloads[w]->name);
            for (int a = 0; a < opt.n_allocators; a++) {
                struct run r;
                run_once(opt.workloads[w], opt.allocators[a], opt.timeout_seconds, &r);
                cell_add(&cells[w][a], &r);
                if (r.ok)
                    fprintf(stderr, " %s %.2fs", opt.allocators[a]->name, r.seconds);
                else
                    fprintf(stderr, " %s FAILED (%s)", opt.allocators[a]->name, r.why);
            }
            fprintf(stderr, "\n");
        }
    print_table();
    int failed_cells = print_failures();
    write_data();
    bool chart_ok = !opt.chart || draw_chart();
    double load[1] = {-1};
    getloadavg(load, 1);
    printf("load average at the end: %.2f\n", load[0]);
    return failed_cells || !chart_ok ? 1 : 0;
}

int main(int argc, char **argv)
{
    find_tool_dir();
    parse_options(argc, argv);
    if (!mkdtemp(work_dir))
        die_errno("mkdtemp");
    snprintf(sqlite_script, sizeof sqlite_script, "%s/script.sql", work_dir);
    snprintf(sqlite_db, sizeof sqlite_db, "%s/suite.db", work_dir);
    snprintf(stderr_file, sizeof stderr_file, "%s/stderr", work_dir);
    write_sqlite_script();
    make_gcc_command();
    struct sigaction sa = {.sa_handler = on_alarm};   /* no SA_RESTART: wait4 returns EINTR */
    sigaction(SIGALRM, &sa, NULL);

    int status = opt.check ? check_mode() : full_mode();
    remove_work_dir();
    return status;
}
