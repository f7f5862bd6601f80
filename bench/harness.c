/* bench/harness.c - the harness shared by the benchmark programs; see
 * harness.h. */
#include "harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

struct bench_sys sys;
struct bench_noise noise;

/* ---- errors ---------------------------------------------------------------- */

void die(const char *what)
{
    fprintf(stderr, "%s: %s\n", harness_prog, what);
    exit(1);
}

void die_errno(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", harness_prog, what, strerror(errno));
    exit(1);
}

long parse_long(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 0);
    if (errno || *end || v <= 0) {
        fprintf(stderr, "%s: bad %s: %s\n", harness_prog, what, s);
        exit(2);
    }
    return v;
}

/* ---- time and statistics --------------------------------------------------- */

double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct fig summarize(const double *v, int n)
{
    double s[64];
    if (n > 64)
        n = 64;
    if (n <= 0)
        return (struct fig){ 0, 0, 0 };
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    struct fig f = { n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2, s[0], s[n - 1] };
    return f;
}

void json_fig(const char *key, struct fig f, const char *sep)
{
    printf("\"%s\": {\"median\": %.4g, \"min\": %.4g, \"max\": %.4g}%s", key, f.med, f.min, f.max, sep);
}

/* ---- the machine ----------------------------------------------------------- */

void probe_system(void)
{
    sys.nproc = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    sys.nproc_affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sys.nproc;

    snprintf(sys.cpu, sizeof sys.cpu, "?");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char *c = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(sys.cpu, sizeof sys.cpu, "%s", c);
                break;
            }
        }
        fclose(f);
    }
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(sys.kernel, sizeof sys.kernel, "%s %s %s", u.sysname, u.release, u.machine);
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &sys.loadavg) != 1)
            sys.loadavg = -1;
        fclose(f);
    }
}

void lib_of(void *fn, char *out, size_t len)
{
    Dl_info di;
    if (fn && dladdr(fn, &di) && di.dli_fname)
        snprintf(out, len, "%s", di.dli_fname);
    else
        snprintf(out, len, "?");
}

/* ---- noise ------------------------------------------------------------------ */

struct cpu_snap cpu_snap(bool children)
{
    struct cpu_snap c = { 0, 0, 0, now_ns() / 1e9 };
    unsigned long long v[8] = { 0 };
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            double hz = (double)sysconf(_SC_CLK_TCK);
            c.busy_s = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;   /* user nice system irq softirq */
            c.steal_s = (double)v[7] / hz;
        }
        fclose(f);
    }
    struct rusage ru;
    for (int who = 0; who < (children ? 2 : 1); who++) {
        if (getrusage(who ? RUSAGE_CHILDREN : RUSAGE_SELF, &ru) == 0)
            c.self_s += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    return c;
}

void noise_measure(struct cpu_snap a, struct cpu_snap b)
{
    noise.wall_s = b.wall_s - a.wall_s;
    double others = (b.busy_s - a.busy_s) - (b.self_s - a.self_s);
    noise.others_cpus = noise.wall_s > 0 && others > 0 ? others / noise.wall_s : 0;
    noise.steal_pct = noise.wall_s > 0 ? 100 * (b.steal_s - a.steal_s) / (noise.wall_s * (double)sys.nproc) : 0;
}
