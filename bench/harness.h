/* bench/harness.h - the harness shared by the benchmark programs
 * (bench/pages, bench/malloc): errors, time, statistics of repeated
 * figures, the machine and how busy it was. See bench/README.md.
 *
 * Nothing here is on a measured path except now_ns(), which brackets
 * timed batches (never single operations).
 */
#ifndef KMM_BENCH_HARNESS_H
#define KMM_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

/* Defined by each program: its name as it prefixes error messages,
 * e.g. "bench/pages". */
extern const char harness_prog[];

/* ---- errors ---------------------------------------------------------------- */

/* Print "PROG: what" to stderr and exit(1). */
_Noreturn void die(const char *what);

/* Print "PROG: what: strerror(errno)" to stderr and exit(1). */
_Noreturn void die_errno(const char *what);

/* s as a positive long (strtol base 0: decimal, 0x hex, 0 octal); anything
 * else, or a value <= 0, prints "PROG: bad what: s" and exits with 2. */
long parse_long(const char *s, const char *what);

/* ---- time and statistics --------------------------------------------------- */

/* CLOCK_MONOTONIC in ns, as a double. One clock_gettime (vDSO, some 20 ns):
 * for timing batches, too coarse and costly for single operations. */
double now_ns(void);

/* qsort comparator for doubles, ascending. */
int cmp_double(const void *a, const void *b);

/* Median, minimum and maximum of the repetitions of one figure. */
struct fig {
    double med, min, max;
};

/* The fig of v[0..n): copies at most 64 values to the stack and sorts them
 * (n log n, n <= 64). n <= 0 gives all zeros; beyond 64 only the first 64
 * count. The median of an even count is the mean of the middle two. */
struct fig summarize(const double *v, int n);

/* Print `"key": {"median": m, "min": a, "max": b}` then sep to stdout. */
void json_fig(const char *key, struct fig f, const char *sep);

/* ---- the machine ----------------------------------------------------------- */

/* Filled by probe_system(). */
extern struct bench_sys {
    long nproc, nproc_affinity;   /* CPUs online; CPUs this process may run on */
    char cpu[128], kernel[200];   /* /proc/cpuinfo model name; uname */
    double loadavg;               /* 1-minute load average, -1 if unreadable */
} sys;

/* Fill sys: sysconf, sched_getaffinity, uname and a read of /proc/cpuinfo
 * and /proc/loadavg. Call once at start (a millisecond or so). */
void probe_system(void);

/* Into out (len bytes, always terminated): the path of the shared object
 * that holds fn, from dladdr, or "?" when fn is NULL or unknown. Cheap. */
void lib_of(void *fn, char *out, size_t len);

/* ---- noise: what else the machine did while the program ran ---------------- */

/* A snapshot of CPU time: of the whole machine (/proc/stat), stolen by the
 * hypervisor, of this process, and the wall clock, all in seconds. */
struct cpu_snap {
    double busy_s, steal_s, self_s, wall_s;
};

/* Take a snapshot: one read of /proc/stat and getrusage. self_s counts this
 * process (RUSAGE_SELF), plus its waited-for children (RUSAGE_CHILDREN)
 * when children is true. */
struct cpu_snap cpu_snap(bool children);

/* Filled by noise_measure(). */
extern struct bench_noise {
    double wall_s;        /* wall time between the two snapshots */
    double others_cpus;   /* CPUs kept busy by other processes, on average */
    double steal_pct;     /* % of all CPUs' time stolen by the hypervisor */
} noise;

/* Fill noise from the snapshots a (start) and b (end); uses sys.nproc, so
 * probe_system() must have run. Arithmetic only. */
void noise_measure(struct cpu_snap a, struct cpu_snap b);

#endif
