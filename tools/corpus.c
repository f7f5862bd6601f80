/* corpus.c - page sources for the kmm tool: the pages of files, and the
 * anonymous resident pages of a running process.
 *
 * Both count their pages first (a store is sized by that count; its
 * metadata is 16 bytes per index, so an oversized store would cost too) and
 * then read them in order. What changed in between is read as it is now,
 * never beyond the count.
 */
#include "tool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct file_entry {
    char *path;
    uint64_t pages;
};

/* A run of consecutive present pages of a process. */
struct page_run {
    uint64_t addr;
    uint64_t pages;
};

struct page_source {
    size_t page_size;
    uint64_t count;
    struct page_source_stats st;
    /* files */
    struct file_entry *files;
    size_t nfiles, files_cap;
    size_t cur_file;       /* the file being read */
    int fd;                /* its descriptor, -1 before it is opened */
    uint64_t cur_page;     /* pages of it read */
    struct files_bound bound;
    /* process */
    int mem_fd;
    struct page_run *runs;
    size_t nruns, runs_cap;
    size_t cur_run;
    uint64_t run_page;     /* pages of the current run read */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static struct page_source *source_new(size_t page_size)
{
    struct page_source *src = calloc(1, sizeof(*src));
    if (!src)
        return NULL;
    src->page_size = page_size;
    src->fd = -1;
    src->mem_fd = -1;
    return src;
}

/* Reads up to len bytes at the file position; fewer only at end of file or
 * on an error. */
static size_t read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t r = read(fd, (char *)buf + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        done += (size_t)r;
    }
    return done;
}

/* ---- files ------------------------------------------------------------------ */

static bool files_full(const struct page_source *src)
{
    return src->bound.max_pages && src->count >= src->bound.max_pages;
}

static int add_file(struct page_source *src, const char *path, const struct stat *sb)
{
    uint64_t pages = ((uint64_t)sb->st_size + src->page_size - 1) / src->page_size;
    if (src->bound.max_file_pages && pages > src->bound.max_file_pages)
        pages = src->bound.max_file_pages;
    if (src->bound.max_pages && pages > src->bound.max_pages - src->count)
        pages = src->bound.max_pages - src->count;
    if (pages == 0)
        return 0;
    if (src->nfiles == src->files_cap) {
        size_t cap = src->files_cap ? 2 * src->files_cap : 256;
        struct file_entry *f = realloc(src->files, cap * sizeof(*f));
        if (!f)
            return -ENOMEM;
        src->files = f;
        src->files_cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    src->files[src->nfiles++] = (struct file_entry){ copy, pages };
    src->count += pages;
    src->st.files++;
    return 0;
}

static bool readable(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Walks dir in name order (so two runs read the same pages), taking every
 * regular file and not following symbolic links. */
static int walk_dir(struct page_source *src, const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        src->st.skipped_files++;
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (rc == 0 && !files_full(src) && strcmp(name, ".") && strcmp(name, "..")) {
            size_t len = strlen(dir) + strlen(name) + 2;
            char *path = malloc(len);
            struct stat sb;
            if (!path) {
                rc = -ENOMEM;
            } else {
                snprintf(path, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
                if (lstat(path, &sb) != 0)
                    ;   /* gone since the directory was read */
                else if (S_ISDIR(sb.st_mode))
                    rc = walk_dir(src, path);
                else if (S_ISREG(sb.st_mode) && readable(path))
                    rc = add_file(src, path, &sb);
                else if (S_ISREG(sb.st_mode))
                    src->st.skipped_files++;
                free(path);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

struct page_source *page_source_files(char *const *paths, int npaths, size_t page_size,
                                      const struct files_bound *bound, char *err, size_t errlen)
{
    struct page_source *src = source_new(page_size);
    if (!src) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    if (bound)
        src->bound = *bound;
    for (int i = 0; i < npaths && !files_full(src); i++) {
        struct stat sb;
        int rc = 0;
        if (stat(paths[i], &sb) != 0) {
            set_err(err, errlen, "%s: %s", paths[i], strerror(errno));
            rc = -1;
        } else if (S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(paths[i]);
            if (!d) {
                set_err(err, errlen, "%s: %s", paths[i], strerror(errno));
                rc = -1;
            } else {
                closedir(d);
                rc = walk_dir(src, paths[i]);
            }
        } else if (!S_ISREG(sb.st_mode)) {
            set_err(err, errlen, "%s: not a regular file or a directory", paths[i]);
            rc = -1;
        } else if (!readable(paths[i])) {
            set_err(err, errlen, "%s: %s", paths[i], strerror(errno));
            rc = -1;
        } else {
            rc = add_file(src, paths[i], &sb);
        }
        if (rc == -ENOMEM)
            set_err(err, errlen, "out of memory");
        if (rc) {
            page_source_close(src);
            return NULL;
        }
    }
    return src;
}

static size_t files_read(struct page_source *src, unsigned char *buf, size_t max)
{
    size_t got = 0;
    while (got < max && src->cur_file < src->nfiles) {
        struct file_entry *fe = &src->files[src->cur_file];
        if (src->fd < 0) {
            src->fd = open(fe->path, O_RDONLY | O_CLOEXEC);
            src->cur_page = 0;
            if (src->fd < 0) {   /* gone or made unreadable since it was counted */
                src->st.vanished_pages += fe->pages;
                src->cur_file++;
                continue;
            }
        }
        size_t n = read_full(src->fd, buf + got * src->page_size, src->page_size);
        if (n == 0) {   /* shorter than when it was counted */
            src->st.vanished_pages += fe->pages - src->cur_page;
            src->cur_page = fe->pages;
        } else {
            memset(buf + got * src->page_size + n, 0, src->page_size - n);
            got++;
            src->cur_page++;
        }
        if (src->cur_page == fe->pages) {
            close(src->fd);
            src->fd = -1;
            src->cur_file++;
        }
    }
    return got;
}

/* ---- a process's anonymous memory ------------------------------------------ */

#define PAGEMAP_PRESENT (1ull << 63)

/* Private anonymous memory: no backing file, and not one of the kernel's
 * special mappings ([vvar], [vdso], [vsyscall], [uprobes]). Named anonymous
 * mappings ("[anon:name]") are anonymous memory too. */
static bool anonymous_mapping(const char *perms, unsigned long inode, const char *name)
{
    if (perms[0] != 'r' || perms[3] != 'p' || inode != 0)
        return false;
    return name[0] == 0 || !strcmp(name, "[heap]") || !strncmp(name, "[stack", 6) || !strncmp(name, "[anon:", 6);
}

static int add_run(struct page_source *src, uint64_t addr, uint64_t pages)
{
    if (src->nruns && src->runs[src->nruns - 1].addr + src->runs[src->nruns - 1].pages * src->page_size == addr) {
        src->runs[src->nruns - 1].pages += pages;
        return 0;
    }
    if (src->nruns == src->runs_cap) {
        size_t cap = src->runs_cap ? 2 * src->runs_cap : 1024;
        struct page_run *r = realloc(src->runs, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        src->runs = r;
        src->runs_cap = cap;
    }
    src->runs[src->nruns++] = (struct page_run){ addr, pages };
    return 0;
}

/* Adds the present pages of [start, end) as runs, from the pagemap. */
static int add_present_pages(struct page_source *src, int pagemap_fd, uint64_t start, uint64_t end)
{
    enum { CHUNK = 4096 };
    static uint64_t entries[CHUNK];
    for (uint64_t addr = start; addr < end;) {
        uint64_t want = (end - addr) / src->page_size;
        if (want > CHUNK)
            want = CHUNK;
        ssize_t r = pread(pagemap_fd, entries, want * 8, (off_t)(addr / src->page_size * 8));
        if (r <= 0)
            return 0;   /* unmapped meanwhile: nothing more here */
        size_t n = (size_t)r / 8;
        for (size_t i = 0; i < n; i++) {
            if (!(entries[i] & PAGEMAP_PRESENT))
                continue;
            if (add_run(src, addr + i * src->page_size, 1))
                return -ENOMEM;
            src->count++;
        }
        addr += n * src->page_size;
    }
    return 0;
}

static const char *access_hint(int err)
{
    return err == EACCES || err == EPERM
               ? " (reading a process's memory needs ptrace access to it: the same user or CAP_SYS_PTRACE, and a"
                 " process that made itself undumpable refuses even root)"
               : "";
}

struct page_source *page_source_process(pid_t pid, size_t page_size, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    struct stat sb;
    if (pid <= 0 || stat(path, &sb) != 0) {
        set_err(err, errlen, "no process with pid %d", (int)pid);
        return NULL;
    }
    struct page_source *src = source_new(page_size);
    if (!src) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "re");
    snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
    int pagemap_fd = maps ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    src->mem_fd = pagemap_fd >= 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (src->mem_fd < 0) {
        int e = errno;
        if (e == ESRCH && stat(path, &sb) == 0)   /* no mm: the process is a kernel thread, or exiting */
            set_err(err, errlen, "process %d has no user memory (a kernel thread?)", (int)pid);
        else
            set_err(err, errlen, "cannot read the memory of process %d: %s%s", (int)pid,
                    e == ENOENT || e == ESRCH ? "it has exited" : strerror(e), access_hint(e));
        if (maps)
            fclose(maps);
        if (pagemap_fd >= 0)
            close(pagemap_fd);
        page_source_close(src);
        return NULL;
    }
    char line[4096];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), maps)) {
        unsigned long start, end, inode;
        char perms[8] = "";
        int name_at = 0;
        if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %lu %n", &start, &end, perms, &inode, &name_at) < 4 ||
            strlen(perms) < 4)
            continue;
        char *name = line + name_at;
        name[strcspn(name, "\n")] = 0;
        if (!anonymous_mapping(perms, inode, name))
            continue;
        src->st.mappings++;
        rc = add_present_pages(src, pagemap_fd, start, end);
    }
    bool read_error = ferror(maps) != 0;
    int e = errno;
    fclose(maps);
    close(pagemap_fd);
    if (rc || read_error) {
        if (rc)
            set_err(err, errlen, "out of memory");
        else
            set_err(err, errlen, "cannot read /proc/%d/maps: %s%s", (int)pid, strerror(e), access_hint(e));
        page_source_close(src);
        return NULL;
    }
    return src;
}

static size_t process_read(struct page_source *src, unsigned char *buf, size_t max)
{
    size_t got = 0;
    while (got < max && src->cur_run < src->nruns) {
        struct page_run *run = &src->runs[src->cur_run];
        uint64_t n = run->pages - src->run_page;
        if (n > max - got)
            n = max - got;
        uint64_t addr = run->addr + src->run_page * src->page_size;
        ssize_t r = pread(src->mem_fd, buf + got * src->page_size, n * src->page_size, (off_t)addr);
        if (r == (ssize_t)(n * src->page_size)) {
            got += n;
        } else {
            /* part of the run unmapped since it was counted: page by page */
            for (uint64_t i = 0; i < n; i++) {
                r = pread(src->mem_fd, buf + got * src->page_size, src->page_size, (off_t)(addr + i * src->page_size));
                if (r == (ssize_t)src->page_size)
                    got++;
                else
                    src->st.vanished_pages++;
            }
        }
        src->run_page += n;
        if (src->run_page == run->pages) {
            src->cur_run++;
            src->run_page = 0;
        }
    }
    return got;
}

/* ---- either ----------------------------------------------------------------- */

uint64_t page_source_count(const struct page_source *src)
{
    return src->count;
}

size_t page_source_read(struct page_source *src, void *buf, size_t max)
{
    size_t n = src->mem_fd >= 0 ? process_read(src, buf, max) : files_read(src, buf, max);
    src->st.pages_read += n;
    return n;
}

void page_source_stats(const struct page_source *src, struct page_source_stats *st)
{
    *st = src->st;
}

void page_source_close(struct page_source *src)
{
    if (!src)
        return;
    for (size_t i = 0; i < src->nfiles; i++)
        free(src->files[i].path);
    free(src->files);
    free(src->runs);
    if (src->fd >= 0)
        close(src->fd);
    if (src->mem_fd >= 0)
        close(src->mem_fd);
    free(src);
}

size_t read_sample(const char *dir, size_t page_size, size_t max_pages, size_t max_file_pages, unsigned char **pages)
{
    char err[256];
    char *paths[] = { (char *)dir };
    struct files_bound bound = { max_pages, max_file_pages };
    struct page_source *src = page_source_files(paths, 1, page_size, &bound, err, sizeof(err));
    *pages = NULL;
    if (!src)
        return 0;
    size_t count = (size_t)page_source_count(src);
    *pages = malloc(count ? count * page_size : 1);
    size_t n = *pages ? page_source_read(src, *pages, count) : 0;
    page_source_close(src);
    return n;
}
