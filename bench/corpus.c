/* bench/corpus.c - corpora of pages made on the machine itself; see
 * corpus.h and bench/README.md ("bench/zsmalloc", "Corpora").
 *
 * Process corpora: the program is started, builds its memory, is stopped
 * with SIGSTOP at a chosen moment, and its anonymous memory is copied out:
 * every private anonymous mapping and the heap in /proc/PID/maps, of which
 * only the pages present in RAM (bit 63 of their /proc/PID/pagemap entry),
 * read from /proc/PID/mem. That is what zram would get if the process were
 * swapped out at that moment. Then the process is killed.
 *
 * File corpora: the contents of files, back to back (as in a tar archive),
 * so that every page is file data: a page per small file would make the
 * corpus mostly the zeros that pad each file's last page.
 */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const corpus_names[] = { "python", "sort", "cc", "bin", "doc", "gz" };
const int corpus_count = (int)(sizeof corpus_names / sizeof corpus_names[0]);

static bool g_verbose;

#define say(...)                                                                                   \
    do {                                                                                           \
        if (g_verbose)                                                                             \
            fprintf(stderr, "bench/zsmalloc: " __VA_ARGS__);                                       \
    } while (0)

static void warn_corpus(const char *name, const char *why)
{
    fprintf(stderr, "bench/zsmalloc: corpus %s skipped: %s\n", name, why);
}

/* ---- a growing array of pages ------------------------------------------------ */

struct page_buf {
    unsigned char *p;
    size_t n, cap, max;   /* pages held, room, the most wanted */
};

/* Room for one more page at the end (not counted until pb->n++). */
static unsigned char *pb_next(struct page_buf *pb)
{
    if (pb->n == pb->cap) {
        size_t cap = pb->cap ? pb->cap * 2 : 1024;
        if (cap > pb->max)
            cap = pb->max;
        unsigned char *p = realloc(pb->p, cap * CORPUS_PAGE);
        if (!p) {
            fprintf(stderr, "bench/zsmalloc: out of memory for a corpus of %zu pages\n", cap);
            exit(1);
        }
        pb->p = p;
        pb->cap = cap;
    }
    return pb->p + pb->n * CORPUS_PAGE;
}

static bool pb_full(const struct page_buf *pb) { return pb->n >= pb->max; }

/* ---- a fixed pseudo-random sequence (the same every run) ---------------------- */

static uint64_t rng_state;
static uint64_t rng(void)
{
    uint64_t x = rng_state;   /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ---- processes ----------------------------------------------------------------- */

/* Starts argv[0] (searched in PATH) with stdin from /dev/null, stdout into
 * a pipe (*out) or /dev/null (out NULL), stderr to /dev/null, LC_ALL=C. */
static pid_t spawn(const char *const argv[], int *out)
{
    int pfd[2] = { -1, -1 };
    if (out && pipe2(pfd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(out ? pfd[1] : null, 1);
        dup2(null, 2);
        setenv("LC_ALL", "C", 1);
        execvp(argv[0], (char *const *)argv);   /* exec does not write them */
        _exit(127);
    }
    if (out) {
        close(pfd[1]);
        *out = pfd[0];
    }
    return pid;
}

/* A field of /proc/PID/status in bytes ("RssAnon:" and the like, in kB
 * there); -1 when the process is gone. */
static long long proc_status_bytes(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, field, fl)) {
            v = atoll(line + fl) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

/* The process state letter from /proc/PID/stat ('Z' when it exited and
 * waits for us), 0 when gone. */
static char proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static void kill_wait(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Appends the present pages of pid's private anonymous mappings and heap to
 * pb (until it is full). Returns false if the process's memory could not be
 * read at all. */
static bool read_anon(pid_t pid, struct page_buf *pb)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "r");
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
    int pm = open(path, O_RDONLY | O_CLOEXEC);
    snprintf(path, sizeof path, "/proc/%d/mem", (int)pid);
    int mem = open(path, O_RDONLY | O_CLOEXEC);
    bool ok = maps && pm >= 0 && mem >= 0;
    static uint64_t ent[512];
    char line[512];
    while (ok && !pb_full(pb) && fgets(line, sizeof line, maps)) {
        unsigned long start, end, inode;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %n", &start, &end, perms, &inode, &name_at) < 4)
            continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = 0;
        bool anon = inode == 0 && (name[0] == 0 || !strcmp(name, "[heap]"));
        if (!anon || perms[0] != 'r' || perms[3] != 'p')
            continue;
        for (unsigned long a = start; a < end && !pb_full(pb);) {
            size_t n = (end - a) / CORPUS_PAGE;
            if (n > 512)
                n = 512;
            ssize_t got = pread(pm, ent, n * 8, (off_t)(a / CORPUS_PAGE * 8));
            if (got <= 0)
                break;
            n = (size_t)got / 8;
            for (size_t i = 0; i < n && !pb_full(pb); i++) {
                if (!(ent[i] >> 63))
                    continue;
                unsigned char *dst = pb_next(pb);
                if (pread(mem, dst, CORPUS_PAGE, (off_t)(a + i * CORPUS_PAGE)) == (ssize_t)CORPUS_PAGE)
                    pb->n++;
            }
            a += n * CORPUS_PAGE;
        }
    }
    if (maps)
        fclose(maps);
    if (pm >= 0)
        close(pm);
    if (mem >= 0)
        close(mem);
    return ok;
}

static char g_tmpdir[64];

static const char *tmp_path(const char *leaf, char *buf, size_t len)
{
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/kmm-bench-zs.XXXXXX");
        if (!mkdtemp(g_tmpdir)) {
            fprintf(stderr, "bench/zsmalloc: mkdtemp: %s\n", strerror(errno));
            exit(1);
        }
    }
    snprintf(buf, len, "%s/%s", g_tmpdir, leaf);
    return buf;
}

static void tmp_cleanup(void)
{
    if (!g_tmpdir[0])
        return;
    DIR *d = opendir(g_tmpdir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (e->d_name[0] != '.') {
                snprintf(p, sizeof p, "%s/%s", g_tmpdir, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(g_tmpdir);
    g_tmpdir[0] = 0;
}

/* python3 holding a heap of records (dicts of strings, numbers and lists),
 * an index dict over them, lists of floats and long joined strings: until
 * its anonymous RSS reaches target bytes. It says "ready" on stdout and
 * sleeps. */
static const char python_script[] =
    "import random, sys, time\n"
    "random.seed(14)\n"
    "target = int(sys.argv[1])\n"
    "alpha = 'abcdefghijklmnopqrstuvwxyz'\n"
    "words = [''.join(random.choices(alpha, k=random.randint(2, 11))) for _ in range(20000)]\n"
    "def rss():\n"
    "    with open('/proc/self/status') as f:\n"
    "        for l in f:\n"
    "            if l.startswith('RssAnon:'):\n"
    "                return int(l.split()[1]) * 1024\n"
    "    return 0\n"
    "people, index, series, blobs, counts = [], {}, [], [], {}\n"
    "i = 0\n"
    "while rss() < target:\n"
    "    for _ in range(2000):\n"
    "        name = random.choice(words).title() + ' ' + random.choice(words).title()\n"
    "        rec = {'id': i, 'name': name, 'email': name.replace(' ', '.').lower() + '@example.org',\n"
    "               'age': random.randint(18, 90), 'score': round(random.random() * 100, 3),\n"
    "               'tags': random.sample(words, random.randint(0, 5)),\n"
    "               'history': [random.randint(0, 1000) for _ in range(random.randint(0, 20))],\n"
    "               'bio': ' '.join(random.choices(words, k=random.randint(5, 60)))}\n"
    "        people.append(rec)\n"
    "        index[name] = rec\n"
    "        for t in rec['tags']:\n"
    "            counts[t] = counts.get(t, 0) + 1\n"
    "        if i % 10 == 0:\n"
    "            series.append([random.gauss(0, 1) for _ in range(50)])\n"
    "        if i % 50 == 0:\n"
    "            blobs.append(('%08d:' % i) + '|'.join(random.choices(words, k=100)))\n"
    "        i += 1\n"
    "sys.stdout.write('ready %d\\n' % i)\n"
    "sys.stdout.flush()\n"
    "time.sleep(3600)\n";

static bool make_python(struct page_buf *pb, size_t max_bytes, char *source, size_t slen)
{
    char target[32];
    snprintf(target, sizeof target, "%zu", max_bytes + max_bytes / 8);
    const char *argv[] = { "python3", "-c", python_script, target, NULL };
    if (access("/usr/bin/python3", X_OK) == 0)
        argv[0] = "/usr/bin/python3";
    int out;
    pid_t pid = spawn(argv, &out);
    if (pid < 0) {
        warn_corpus("python", "cannot start python3");
        return false;
    }
    say("python: %s building a heap of %s bytes...\n", argv[0], target);
    char line[64] = { 0 };
    ssize_t n = read(out, line, sizeof line - 1);
    close(out);
    if (n <= 0 || strncmp(line, "ready", 5)) {
        kill_wait(pid);
        warn_corpus("python", "python3 did not build its heap");
        return false;
    }
    kill(pid, SIGSTOP);
    line[strcspn(line, "\n")] = 0;
    long long rss = proc_status_bytes(pid, "RssAnon:");
    bool ok = read_anon(pid, pb);
    kill_wait(pid);
    snprintf(source, slen, "%s heap of dicts, lists, strings (%s records, RssAnon %lld MiB)", argv[0],
             line + 6, rss >> 20);
    return ok;
}

/* A log-like line: a timestamp, a host, a service, a request, figures and
 * words of a small vocabulary, so that it compresses as text does. */
static size_t log_line(char *p, char (*vocab)[12], int nvocab)
{
    uint64_t r = rng();
    static const char *const verbs[] = { "GET", "POST", "PUT", "DELETE" };
    return (size_t)sprintf(p,
                           "2026-%02d-%02d %02d:%02d:%02d.%03d host-%02d %s[%d]: %s /api/v%d/%s/%u status=%d "
                           "bytes=%u user=%s%s ms=%u\n",
                           (int)(r % 12) + 1, (int)(r >> 4) % 28 + 1, (int)(r >> 9) % 24, (int)(r >> 14) % 60,
                           (int)(r >> 20) % 60, (int)(r >> 26) % 1000, (int)(r >> 36) % 40,
                           vocab[(r >> 42) % 64], (int)(rng() % 30000), verbs[rng() % 4], (int)(rng() % 3) + 1,
                           vocab[rng() % (uint64_t)nvocab], (unsigned)(rng() % 100000),
                           (int[]){ 200, 200, 200, 201, 204, 304, 404, 500 }[rng() % 8],
                           (unsigned)(rng() % 65536), vocab[rng() % (uint64_t)nvocab],
                           vocab[rng() % (uint64_t)nvocab], (unsigned)(rng() % 5000));
}

/* GNU sort (by service, then time) of a generated log of about max_bytes,
 * stopped once it has read everything: its anonymous RSS is above the
 * input's size and has not grown for 40 ms (reading runs at hundreds of
 * MB/s, and the whole sort of 64 MiB takes under a second). */
static bool make_sort(struct page_buf *pb, size_t max_bytes, char *source, size_t slen)
{
    char input[128];
    tmp_path("sort-input.log", input, sizeof input);
    FILE *f = fopen(input, "w");
    if (!f) {
        warn_corpus("sort", "cannot write its input in /tmp");
        return false;
    }
    static char vocab[2048][12];
    rng_state = 0x736f7274ull;   /* "sort" */
    for (int i = 0; i < 2048; i++) {
        int len = 3 + (int)(rng() % 8);
        for (int k = 0; k < len; k++)
            vocab[i][k] = (char)('a' + rng() % 26);
        vocab[i][len] = 0;
    }
    char line[512];
    size_t bytes = 0, lines = 0;
    while (bytes < max_bytes / 4 * 3) {   /* with the line table, RssAnon about max_bytes */
        size_t n = log_line(line, vocab, 2048);
        fwrite(line, 1, n, f);
        bytes += n;
        lines++;
    }
    if (fclose(f) != 0) {
        unlink(input);
        warn_corpus("sort", "cannot write its input in /tmp");
        return false;
    }
    char mem[32];
    snprintf(mem, sizeof mem, "%zuK", (bytes * 3) >> 10);   /* all of it in memory: no temporary files */
    const char *argv[] = { "sort", "-S", mem, "--parallel=1", "-k4,4", "-k1,2", "-o", "/dev/null", input, NULL };
    pid_t pid = spawn(argv, NULL);
    if (pid < 0) {
        unlink(input);
        warn_corpus("sort", "cannot start sort");
        return false;
    }
    say("sort: sorting %zu MiB of log lines...\n", bytes >> 20);
    long long last = -1;
    int still = 0;
    while (still < 2) {
        sleep_ms(20);
        char st = proc_state(pid);
        if (st == 0 || st == 'Z') {
            kill_wait(pid);
            unlink(input);
            warn_corpus("sort", "sort finished before it could be stopped");
            return false;
        }
        long long rss = proc_status_bytes(pid, "RssAnon:");
        /* its buffer holds the whole input once read, the line table beside it */
        still = rss == last && rss >= (long long)bytes ? still + 1 : 0;
        last = rss;
    }
    kill(pid, SIGSTOP);
    bool ok = read_anon(pid, pb);
    kill_wait(pid);
    unlink(input);
    snprintf(source, slen, "GNU sort -S %s of %zu MiB, %zu log lines (RssAnon %lld MiB)", mem, bytes >> 20, lines,
             last >> 20);
    return ok;
}

/* A C file of nfuncs functions in chains of static helpers, with loops,
 * switches, structs and arrays: what -O2 inlines and optimises, so cc1
 * holds the translation unit's trees, GIMPLE and RTL for a while. */
static bool write_c_file(const char *path, int nfuncs)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    rng_state = 0x63633130ull;
    fprintf(f, "struct rec { int id; long sum; double avg; int tab[16]; struct rec *next; };\n"
               "extern int printf(const char *, ...);\n");
    for (int i = 0; i < nfuncs; i++) {
        unsigned a = (unsigned)(rng() % 97) + 3, b = (unsigned)(rng() % 1000) + 1, c = (unsigned)(rng() % 13) + 2;
        fprintf(f,
                "static int f%d(struct rec *r, int x)\n{\n"
                "    int acc = %u;\n"
                "    for (int i = 0; i < %u; i++) {\n"
                "        acc += r->tab[(i + x) & 15] * (x ^ i);\n"
                "        if (acc > %u)\n"
                "            acc = acc / %u + r->id;\n"
                "        r->sum += acc;\n"
                "    }\n"
                "    switch (x & 7) {\n"
                "    case 0: acc += %u; break;\n"
                "    case 1: acc ^= r->tab[%u]; break;\n"
                "    case 2: r->avg = r->avg * 0.5 + acc; break;\n"
                "    case 3: if (r->next) acc += r->next->tab[x & 15]; break;\n"
                "    case 4: acc -= (int)r->sum; break;\n"
                "    default: acc += x * %u;\n"
                "    }\n",
                i, a, c, b * 7, c, b, a % 16, a);
        if (i > 0)
            fprintf(f, "    if (x > %u)\n        acc += f%d(r, x - %u);\n", b, (int)(rng() % (uint64_t)i), c);
        fprintf(f, "    return acc;\n}\n");
        if (i % 16 == 15)
            fprintf(f,
                    "int g%d(struct rec *r, int n)\n{\n    int t = 0;\n    for (int k = 0; k < n; k++)\n"
                    "        t += f%d(r, k) + f%d(r, k + 1) + f%d(r, k * 3);\n    if (t == %u)\n"
                    "        printf(\"%%d\\n\", t);\n    return t;\n}\n",
                    i, i, i - 5, i - 11, b);
    }
    return fclose(f) == 0;
}

/* The child of ppid whose comm is comm, or 0. */
static pid_t find_child(pid_t ppid, const char *comm)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close)
            continue;
        int pp = 0;
        if (sscanf(close + 2, "%*c %d", &pp) != 1 || pp != ppid)
            continue;
        if ((size_t)(close - open - 1) == strlen(comm) && !strncmp(open + 1, comm, strlen(comm)))
            found = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return found;
}

/* cc -O2 -S of a generated file, its compiler proper (cc1, the driver's
 * child) stopped halfway through emitting the functions. Seen with gcc 12
 * here: cc1 parses the whole file first (a second or so), then optimises
 * and emits function after function, its RSS growing all the way; its
 * assembly comes to some 700 bytes per generated function. So cc1 is
 * stopped when the assembly file reaches 350 bytes per function: half the
 * functions optimised, in the middle of the optimisation passes. The file
 * has a function per 40 KiB of max_bytes (at least 2000), which puts cc1's
 * RSS about max_bytes then. */
static bool make_cc(struct page_buf *pb, size_t max_bytes, char *source, size_t slen)
{
    char src[128], out[128];
    tmp_path("big.c", src, sizeof src);
    tmp_path("big.s", out, sizeof out);
    int nfuncs = (int)(max_bytes / (40 << 10));
    if (nfuncs < 2000)
        nfuncs = 2000;
    if (!write_c_file(src, nfuncs)) {
        warn_corpus("cc", "cannot write its source in /tmp");
        return false;
    }
    const char *argv[] = { "cc", "-O2", "-S", "-o", out, src, NULL };
    pid_t drv = spawn(argv, NULL);
    if (drv < 0) {
        warn_corpus("cc", "cannot start cc");
        return false;
    }
    say("cc: cc -O2 -S of %d generated functions...\n", nfuncs);
    pid_t cc1 = 0;
    long long emitted = 0, half = (long long)nfuncs * 350;
    int polls = 0;
    for (;; polls++) {
        sleep_ms(20);
        char st = proc_state(drv);
        if (st == 0 || st == 'Z')
            break;
        if (!cc1)
            cc1 = find_child(drv, "cc1");
        struct stat sb;
        emitted = stat(out, &sb) == 0 ? (long long)sb.st_size : 0;
        if (cc1 && emitted >= half)
            break;
    }
    bool ok = false;
    long long rss = 0;
    if (cc1 && emitted >= half && kill(cc1, SIGSTOP) == 0) {
        kill(drv, SIGSTOP);
        rss = proc_status_bytes(cc1, "RssAnon:");
        ok = read_anon(cc1, pb);
        kill(cc1, SIGKILL);
    }
    kill_wait(drv);
    unlink(src);
    unlink(out);
    if (!ok) {
        warn_corpus("cc", "cc finished (or failed) before it could be stopped");
        return false;
    }
    snprintf(source, slen, "cc1 of cc -O2 -S, %d generated functions, stopped after %.1f s at %lld KiB of assembly "
             "(RssAnon %lld MiB)", nfuncs, polls * 0.02, emitted >> 10, rss >> 20);
    return true;
}

/* ---- files ----------------------------------------------------------------------- */

enum file_kind { FILES_ELF, FILES_TEXT, FILES_GZ };

static struct {
    char **paths;
    size_t n, cap;
    enum file_kind kind;
} g_files;

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode) || st->st_size == 0)
        return 0;
    bool gz = ends_with(path, ".gz");
    if ((g_files.kind == FILES_GZ) != gz)
        return 0;
    if (g_files.kind == FILES_TEXT) {
        static const char *const skip[] = { ".xz", ".bz2", ".zst", ".png", ".jpg", ".gif", ".pdf", ".zip" };
        for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++)
            if (ends_with(path, skip[i]))
                return 0;
    }
    if (g_files.n == g_files.cap) {
        g_files.cap = g_files.cap ? g_files.cap * 2 : 4096;
        g_files.paths = realloc(g_files.paths, g_files.cap * sizeof *g_files.paths);
        if (!g_files.paths)
            exit(1);
    }
    g_files.paths[g_files.n++] = strdup(path);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The files of dirs of kind, sorted and then shuffled with a fixed seed,
 * read back to back (at most per_file bytes of each, from its start) into
 * pb until it is full; the last page is padded with zeros. */
static size_t read_files(const char *const *dirs, int ndirs, enum file_kind kind, size_t per_file,
                         struct page_buf *pb)
{
    g_files.kind = kind;
    g_files.n = 0;
    for (int i = 0; i < ndirs; i++)
        nftw(dirs[i], collect, 32, FTW_PHYS);
    qsort(g_files.paths, g_files.n, sizeof *g_files.paths, cmp_str);
    rng_state = 0x66696c6573ull + (uint64_t)kind;
    for (size_t i = g_files.n; i > 1; i--) {
        size_t j = (size_t)(rng() % i);
        char *t = g_files.paths[i - 1];
        g_files.paths[i - 1] = g_files.paths[j];
        g_files.paths[j] = t;
    }
    size_t used = 0, files = 0;   /* bytes filled in the page being filled */
    static unsigned char buf[1 << 16];
    for (size_t i = 0; i < g_files.n && !pb_full(pb); i++) {
        int fd = open(g_files.paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t got = read(fd, buf, sizeof buf);
        if (kind == FILES_ELF && (got < 4 || memcmp(buf, "\177ELF", 4))) {
            close(fd);
            continue;
        }
        files++;
        size_t left = per_file;
        while (got > 0 && left > 0 && !pb_full(pb)) {
            size_t take = (size_t)got < left ? (size_t)got : left;
            for (size_t off = 0; off < take && !pb_full(pb);) {
                unsigned char *page = pb_next(pb);
                size_t k = CORPUS_PAGE - used < take - off ? CORPUS_PAGE - used : take - off;
                memcpy(page + used, buf + off, k);
                used += k;
                off += k;
                if (used == CORPUS_PAGE) {
                    pb->n++;
                    used = 0;
                }
            }
            left -= take;
            got = read(fd, buf, sizeof buf);
        }
        close(fd);
    }
    if (used > 0 && !pb_full(pb)) {
        memset(pb_next(pb) + used, 0, CORPUS_PAGE - used);
        pb->n++;
    }
    for (size_t i = 0; i < g_files.n; i++)
        free(g_files.paths[i]);
    g_files.n = 0;
    return files;
}

static bool make_files(const char *name, struct page_buf *pb, char *source, size_t slen)
{
    size_t files;
    if (!strcmp(name, "bin")) {
        static const char *const dirs[] = { "/usr/bin", "/usr/lib" };
        files = read_files(dirs, 2, FILES_ELF, (size_t)2 << 20, pb);
        snprintf(source, slen, "ELF files of /usr/bin and /usr/lib: %zu files, at most 2 MiB of each", files);
    } else if (!strcmp(name, "doc")) {
        static const char *const dirs[] = { "/usr/share/doc" };
        files = read_files(dirs, 1, FILES_TEXT, (size_t)2 << 20, pb);
        snprintf(source, slen, "/usr/share/doc, uncompressed files: %zu files", files);
    } else {
        static const char *const dirs[] = { "/usr/share" };
        files = read_files(dirs, 1, FILES_GZ, (size_t)2 << 20, pb);
        snprintf(source, slen, "*.gz under /usr/share: %zu files", files);
    }
    if (pb->n == 0) {
        warn_corpus(name, "no such files on this machine");
        return false;
    }
    return true;
}

/* ---- the corpora ------------------------------------------------------------------- */

bool corpus_make(const char *name, size_t max_bytes, bool verbose, struct corpus *c)
{
    g_verbose = verbose;
    memset(c, 0, sizeof *c);
    if (sysconf(_SC_PAGESIZE) != (long)CORPUS_PAGE) {
        warn_corpus(name, "the host page size is not 4 KiB");
        return false;
    }
    struct page_buf pb = { .max = max_bytes / CORPUS_PAGE };
    if (pb.max == 0)
        return false;
    bool ok;
    if (!strcmp(name, "python"))
        ok = make_python(&pb, max_bytes, c->source, sizeof c->source);
    else if (!strcmp(name, "sort"))
        ok = make_sort(&pb, max_bytes, c->source, sizeof c->source);
    else if (!strcmp(name, "cc"))
        ok = make_cc(&pb, max_bytes, c->source, sizeof c->source);
    else if (!strcmp(name, "bin") || !strcmp(name, "doc") || !strcmp(name, "gz"))
        ok = make_files(name, &pb, c->source, sizeof c->source);
    else {
        fprintf(stderr, "bench/zsmalloc: unknown corpus %s (known: python sort cc bin doc gz)\n", name);
        return false;
    }
    tmp_cleanup();
    if (!ok || pb.n == 0) {
        free(pb.p);
        return false;
    }
    for (int i = 0; i < corpus_count; i++)
        if (!strcmp(name, corpus_names[i]))
            c->name = corpus_names[i];
    c->pages = pb.p;
    c->npages = pb.n;
    say("%s: %zu pages (%s)\n", name, pb.n, c->source);
    return true;
}

void corpus_free(struct corpus *c)
{
    free(c->pages);
    c->pages = NULL;
    c->npages = 0;
}
