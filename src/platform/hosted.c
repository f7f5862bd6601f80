/* hosted.c - the Linux user-space platform: the only file that talks to the OS.
 *
 * Physical memory is a memfd of mem_size bytes: sparse, so frames cost
 * nothing until touched; a physical address is an offset in it. The direct
 * map is one shared mapping of the whole file, so a frame can also be mapped
 * a second time elsewhere, as in a kernel. Releasing frames punches a hole in
 * the file, which frees the memory and makes the pages read back as zeros.
 */
#include <kmm/platform.h>
#include <kmm/vm.h>

#include <errno.h>
#include <time.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <unistd.h>

_Static_assert(KMM_ENOMEM == ENOMEM && KMM_EBUSY == EBUSY && KMM_EINVAL == EINVAL,
               "kmm's error numbers are Linux's");
_Static_assert(sizeof(pthread_mutex_t) <= sizeof(struct kmm_lock), "a mutex fits in struct kmm_lock");

#define DEFAULT_MEM_SIZE (64ull << 30)

struct hosted {
    int fd;
    void *base;
    uint64_t size;
    int copy_fd;                    /* during a fork: the child's physical memory, or -1 */
};

/* The direct map is aligned like the largest block it can hold, so that a
 * block's virtual address is as aligned as its physical one (a 2 MiB block
 * at a 2 MiB virtual boundary, a 16 KiB page at a 16 KiB one). */
static size_t direct_map_alignment(uint64_t size, size_t page_size)
{
    uint64_t largest = (uint64_t)page_size << KMM_MAX_ORDER;
    uint64_t align = page_size;
    while (align < size && align < largest)
        align <<= 1;
    return (size_t)align;
}

/* len bytes of inaccessible address space at a multiple of align: reserve
 * len + align, keep the aligned part, give the rest back. */
static char *reserve_aligned(size_t len, size_t align)
{
    char *reserve = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (reserve == MAP_FAILED)
        return NULL;
    char *base = (char *)(((uintptr_t)reserve + align - 1) & ~(uintptr_t)(align - 1));
    if (base > reserve)
        munmap(reserve, (size_t)(base - reserve));
    size_t tail = (size_t)(reserve + len + align - (base + len));
    if (tail)
        munmap(base + len, tail);
    return base;
}

/* Maps the memfd at an address aligned to align, over a reservation. */
static void *map_aligned(int fd, size_t size, size_t align)
{
    char *base = reserve_aligned(size, align);
    if (!base)
        return NULL;
    if (mmap(base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, fd, 0) == MAP_FAILED) {
        munmap(base, size);
        return NULL;
    }
    return base;
}

static int hosted_open(const struct kmm_platform *pf, const struct kmm_config *cfg, struct kmm_memory *mem, void **ctx)
{
    (void)pf;
    uint64_t size = cfg->mem_size ? cfg->mem_size : DEFAULT_MEM_SIZE;
    long host_page = sysconf(_SC_PAGESIZE);
    if (cfg->page_size < (size_t)host_page || size > (uint64_t)SIZE_MAX / 2)
        return -EINVAL;
    struct hosted *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (h == MAP_FAILED)
        return -ENOMEM;
    h->fd = memfd_create("kmm-physical-memory", MFD_CLOEXEC);
    if (h->fd < 0)
        goto fail;
    if (ftruncate(h->fd, (off_t)size) != 0)
        goto fail_fd;
    h->base = map_aligned(h->fd, (size_t)size, direct_map_alignment(size, cfg->page_size));
    if (!h->base)
        goto fail_fd;
    h->size = size;
    h->copy_fd = -1;
    mem->direct_map = (uintptr_t)h->base;
    mem->nr_ranges = 1;
    mem->ranges[0].start = 0;
    mem->ranges[0].end = size;
    *ctx = h;
    return 0;
fail_fd:
    close(h->fd);
fail:
    munmap(h, sizeof(*h));
    return -ENOMEM;
}

#if defined(__SANITIZE_ADDRESS__)
/* ASan keeps its shadow of unmapped memory: the pages kmm poisoned would
 * stay poisoned for the next mapping at the same address. Dropping the
 * shadow pages makes them read back as zero, "addressable". x86-64 Linux
 * layout: shadow = (address >> 3) + 0x7fff8000. */
static void forget_asan_shadow(void *base, size_t size)
{
#if defined(__x86_64__)
    uintptr_t from = ((uintptr_t)base >> 3) + 0x7fff8000, to = (((uintptr_t)base + size) >> 3) + 0x7fff8000;
    long page = sysconf(_SC_PAGESIZE);
    from = (from + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    to &= ~(uintptr_t)(page - 1);
    if (to > from)
        madvise((void *)from, to - from, MADV_DONTNEED);
#else
    (void)base, (void)size;
#endif
}
#endif

static void hosted_close(void *ctx)
{
    struct hosted *h = ctx;
#if defined(__SANITIZE_ADDRESS__)
    forget_asan_shadow(h->base, (size_t)h->size);
#endif
    munmap(h->base, (size_t)h->size);
    close(h->fd);
    munmap(h, sizeof(*h));
}

static void *hosted_meta_alloc(void *ctx, size_t len)
{
    (void)ctx;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void hosted_meta_free(void *ctx, void *p, size_t len)
{
    (void)ctx;
    munmap(p, len);
}

static int hosted_release(void *ctx, kmm_phys_t addr, uint64_t len)
{
    struct hosted *h = ctx;
    if (fallocate(h->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)addr, (off_t)len) != 0)
        return -errno;
    return 0;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23   /* Linux 5.14 */
#endif
/* The release decay's clock: the coarse monotonic clock (vDSO, no system
 * call, a few milliseconds of resolution, which is all it needs). */
static uint64_t hosted_clock_ms(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int hosted_populate(void *ctx, kmm_phys_t addr, uint64_t len)
{
    struct hosted *h = ctx;
    if (madvise((char *)h->base + addr, (size_t)len, MADV_POPULATE_WRITE) != 0)
        return -errno;   /* an older kernel: the pages fault in as they are touched */
    return 0;
}

/* Bytes of the memfd backed by memory: its data extents. */
static uint64_t hosted_resident(void *ctx)
{
    struct hosted *h = ctx;
    uint64_t total = 0;
    off_t pos = 0;
    while ((uint64_t)pos < h->size) {
        off_t data = lseek(h->fd, pos, SEEK_DATA);
        if (data < 0)
            break;
        off_t hole = lseek(h->fd, data, SEEK_HOLE);
        if (hole < 0)
            hole = (off_t)h->size;
        total += (uint64_t)(hole - data);
        pos = hole;
    }
    return total;
}

/* ---- virtual memory: second mappings of the memfd in a PROT_NONE reservation ---- */

static void *hosted_vm_reserve(void *ctx, size_t len, size_t align)
{
    (void)ctx;
    return reserve_aligned(len, align);
}

static void hosted_vm_unreserve(void *ctx, void *va, size_t len)
{
    (void)ctx;
#if defined(__SANITIZE_ADDRESS__)
    forget_asan_shadow(va, len);
#endif
    munmap(va, len);
}

static int prot_bits(unsigned prot)
{
    return (prot & KMM_PROT_READ ? PROT_READ : 0) | (prot & KMM_PROT_WRITE ? PROT_WRITE : 0) |
           (prot & KMM_PROT_EXEC ? PROT_EXEC : 0);
}

static int hosted_vm_unmap(void *ctx, void *va, size_t len);

/* A secret mapping: locked (never swapped; mlock fails past RLIMIT_MEMLOCK,
 * then the mapping is undone and the caller told -EAGAIN), left out of core
 * dumps, and absent from a child of fork. */
static int make_secret(void *ctx, void *va, size_t len)
{
    /* the system call itself: the sanitizers' mlock interceptors succeed
     * without locking anything */
    if (syscall(SYS_mlock, va, len) != 0) {
        hosted_vm_unmap(ctx, va, len);
        return errno == ENOMEM || errno == EAGAIN || errno == EPERM ? -EAGAIN : -errno;
    }
    if (madvise(va, len, MADV_DONTDUMP) != 0 || madvise(va, len, MADV_DONTFORK) != 0) {
        int err = -errno;
        hosted_vm_unmap(ctx, va, len);
        return err;
    }
    return 0;
}

/* MAP_FIXED replaces the reservation's PROT_NONE pages in one call; the
 * kernel merges the mapping with a neighbour that maps the file's adjacent
 * offsets. MAP_POPULATE fills the page tables now, as a kernel's vmalloc
 * does, instead of one fault per page at first touch (docs/decisions.md,
 * "Populate every run": first-touch population for large runs was
 * measured and not taken). */
static int hosted_vm_map(void *ctx, void *va, kmm_phys_t phys, size_t len, unsigned prot)
{
    struct hosted *h = ctx;
    if ((prot & KMM_PROT_EXEC) && (prot & KMM_PROT_WRITE))
        return -EINVAL;   /* never writable and executable */
    int populate = prot & KMM_MAP_NOPOPULATE ? 0 : MAP_POPULATE;
    if (mmap(va, len, prot_bits(prot), MAP_SHARED | MAP_FIXED | populate, h->fd, (off_t)phys) == MAP_FAILED)
        return -errno;
    return prot & KMM_MAP_SECRET ? make_secret(ctx, va, len) : 0;
}

/* Back to reserved and inaccessible, atomically: no other thread's mmap can
 * take the range in between, as it could after a munmap. */
static int hosted_vm_unmap(void *ctx, void *va, size_t len)
{
    (void)ctx;
    if (mmap(va, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0) == MAP_FAILED)
        return -errno;
    return 0;
}

/* ---- pages out of the direct map ---- */

/* mprotect keeps the range a mapping of the file (a fork's child remaps it
 * from the copy with the same protection: it stays out of reach there
 * too); mapping it back merges it with its neighbours again. */
static int hosted_direct_unmap(void *ctx, kmm_phys_t addr, uint64_t len)
{
    struct hosted *h = ctx;
    return mprotect((char *)h->base + addr, (size_t)len, PROT_NONE) == 0 ? 0 : -errno;
}

static int hosted_direct_restore(void *ctx, kmm_phys_t addr, uint64_t len)
{
    struct hosted *h = ctx;
    return mprotect((char *)h->base + addr, (size_t)len, PROT_READ | PROT_WRITE) == 0 ? 0 : -errno;
}

/* The hole reads back as zeros through every mapping of the file, and its
 * memory is freed: no page of it is touched. */
static int hosted_frames_zero(void *ctx, kmm_phys_t addr, uint64_t len)
{
    return hosted_release(ctx, addr, len);
}

/* pwritev per run of pieces adjacent in the file (IOV_MAX at a time): the
 * kernel copies into the frames through its own mapping of them, so no
 * mapping of this process is ever writable there. */
static int hosted_frames_write(void *ctx, const struct kmm_frame_write *w, size_t n)
{
    struct hosted *h = ctx;
    struct iovec iov[256];   /* up to IOV_MAX (1024) per call; 256 (4 KiB of stack) is most of the gain */
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        uint64_t start = w[i].phys, end = w[i].phys;
        while (i < n && k < sizeof iov / sizeof iov[0] && w[i].phys == end) {
            iov[k].iov_base = (void *)w[i].src;
            iov[k].iov_len = w[i].len;
            end += w[i].len;
            k++, i++;
        }
        if (end > h->size || end < start)
            return -EINVAL;
        size_t done = 0, total = (size_t)(end - start);
        struct iovec *v = iov;
        while (done < total) {
            ssize_t r = pwritev(h->fd, v, (int)k, (off_t)(start + done));
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            done += (size_t)r;
            /* a short write: skip what went, go on with the rest */
            while (k && (size_t)r >= v->iov_len) {
                r -= (ssize_t)v->iov_len;
                v++, k--;
            }
            if (k && r) {
                v->iov_base = (char *)v->iov_base + r;
                v->iov_len -= (size_t)r;
            }
        }
    }
    return 0;
}

static void hosted_icache_sync(void *ctx, void *va, size_t len)
{
    (void)ctx;
    __builtin___clear_cache((char *)va, (char *)va + len);
}

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif
/* memfd_secret(2): pages the kernel takes out of its own direct map, locked
 * and not dumped by the kernel itself (it charges RLIMIT_MEMLOCK: -EAGAIN
 * past it). A file per mapping: a secretmem file's size is set once. */
static int hosted_secret_map(void *ctx, void *va, size_t len)
{
    int fd = (int)syscall(SYS_memfd_secret, (unsigned)O_CLOEXEC);
    if (fd < 0)
        return errno == ENOSYS || errno == EPERM || errno == EINVAL ? -ENOSYS : -errno;
    int err = 0;
    if (ftruncate(fd, (off_t)len) != 0)
        err = -errno;
    else if (mmap(va, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
        err = errno == EAGAIN || errno == ENOMEM ? -EAGAIN : -errno;
    close(fd);
    if (err)
        return err;
    if (madvise(va, len, MADV_DONTDUMP) != 0 || madvise(va, len, MADV_DONTFORK) != 0) {
        err = -errno;
        hosted_vm_unmap(ctx, va, len);
    }
    return err;
}

/* Mappings the process holds now: the lines of /proc/self/maps (0 when it
 * cannot be read). Read with read(2) into a stack buffer: no malloc, no stdio. */
static size_t mappings_held(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t lines = 0;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    close(fd);
    return lines;
}

/* How many more mappings the process may make: vm.max_map_count (65530,
 * Linux's default, if /proc cannot tell) less the mappings it holds now
 * (at least 1: 0 would mean no limit). */
static size_t hosted_vm_map_limit(void *ctx)
{
    (void)ctx;
    size_t limit = 65530;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[32];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0) {
            buf[n] = 0;
            unsigned long v = strtoul(buf, NULL, 10);
            if (v)
                limit = v;
        }
        close(fd);
    }
    size_t held = mappings_held();
    return held < limit ? limit - held : 1;
}

/* ---- fork: the child gets a copy of the memfd under the same mappings ---- */

/* Copies the data extents of from into to (same size; holes stay holes).
 * copy_file_range keeps the bytes in the kernel (no user buffer, so no
 * sanitizer reads kmm's poisoned free pages) and was the fastest of the
 * ways measured (bench/fork --copy: copy_file_range, sendfile, mmap +
 * memcpy); sendfile, as cheap, where it is missing. */
static int copy_extents(int from, int to, uint64_t size)
{
    off_t pos = 0;
    while ((uint64_t)pos < size) {
        off_t data = lseek(from, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno;
        off_t hole = lseek(from, data, SEEK_HOLE);
        if (hole < 0)
            hole = (off_t)size;
        for (off_t in = data, out = data; in < hole;) {
            ssize_t n = copy_file_range(from, &in, to, &out, (size_t)(hole - in), 0);
            if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP)) {
                /* a kernel or filesystem without it: sendfile, as fast here */
                if (lseek(to, out, SEEK_SET) < 0)
                    return -errno;
                n = sendfile(to, from, &in, (size_t)(hole - in));
                out = in;
            }
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
        }
        pos = hole;
    }
    return 0;
}

static int hosted_fork_prepare(void *ctx)
{
    struct hosted *h = ctx;
    h->copy_fd = memfd_create("kmm-physical-memory", MFD_CLOEXEC);
    if (h->copy_fd < 0)
        return -errno;
    int err = ftruncate(h->copy_fd, (off_t)h->size) != 0 ? -errno : copy_extents(h->fd, h->copy_fd, h->size);
    if (err) {
        close(h->copy_fd);
        h->copy_fd = -1;
    }
    return err;
}

static void hosted_fork_parent(void *ctx)
{
    struct hosted *h = ctx;
    if (h->copy_fd >= 0)
        close(h->copy_fd);
    h->copy_fd = -1;
}

/* Raw system calls: the sanitizers' mmap interceptors would reset their
 * shadow of the range, which must stay as the parent left it (the copy
 * holds the same bytes). */
static int remap(uintptr_t start, uintptr_t end, int prot, int fd, uint64_t off)
{
    long rc = fd >= 0 ? syscall(SYS_mmap, start, end - start, prot, MAP_SHARED | MAP_FIXED, fd, (off_t)off)
                      : syscall(SYS_mmap, start, end - start, PROT_NONE,
                                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
    return rc == -1 ? -1 : 0;
}

static uint64_t parse_hex(const char **s)
{
    uint64_t v = 0;
    for (;; (*s)++) {
        char c = **s;
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
        if (d == 16)
            return v;
        v = v * 16 + d;
    }
}

/* One line of /proc/self/maps, "start-end perms offset major:minor inode
 * path": if it maps the file (dev, ino), remaps it onto to. */
static void remap_line(const char *s, dev_t dev, ino_t ino, int to)
{
    uintptr_t start = (uintptr_t)parse_hex(&s);
    s++;
    uintptr_t end = (uintptr_t)parse_hex(&s);
    s++;
    int prot = (s[0] == 'r' ? PROT_READ : 0) | (s[1] == 'w' ? PROT_WRITE : 0) | (s[2] == 'x' ? PROT_EXEC : 0);
    bool shared = s[3] == 's';
    s += 5;
    uint64_t off = parse_hex(&s);
    s++;
    unsigned major = (unsigned)parse_hex(&s);
    s++;
    unsigned minor = (unsigned)parse_hex(&s);
    s++;
    uint64_t inode = 0;
    for (; *s >= '0' && *s <= '9'; s++)
        inode = inode * 10 + (uint64_t)(*s - '0');
    if (shared && inode == (uint64_t)ino && major == major(dev) && minor == minor(dev))
        remap(start, end, prot, to, off);
}

/* Every mapping of the old memfd (the direct map and each vm_map alias) is
 * replaced by the same range of the copy, found in /proc/self/maps: no
 * table to keep on the vm_map path, and no malloc (the child of a threaded
 * parent may only call async-signal-safe functions). The kernel resumes
 * reading the file after the last address read, so remapping between
 * reads is safe. Without a copy the mappings become inaccessible instead:
 * the child faults on the memory system rather than write the parent's. */
static void hosted_fork_child(void *ctx)
{
    struct hosted *h = ctx;
    struct stat st;
    int maps = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fstat(h->fd, &st) == 0 && maps >= 0) {
        char buf[4096];
        size_t have = 0;
        for (;;) {
            ssize_t n = read(maps, buf + have, sizeof buf - 1 - have);
            if (n <= 0)
                break;
            have += (size_t)n;
            buf[have] = 0;
            char *line = buf, *nl;
            while ((nl = strchr(line, '\n')) != NULL) {
                *nl = 0;
                remap_line(line, st.st_dev, st.st_ino, h->copy_fd);
                line = nl + 1;
            }
            have = (size_t)(buf + have - line);
            if (have == sizeof buf - 1)
                have = 0;   /* a line this long (a path) is not one of ours */
            memmove(buf, line, have);
        }
    }
    if (maps >= 0)
        close(maps);
    close(h->fd);
    h->fd = h->copy_fd;
    h->copy_fd = -1;
}

static int hosted_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    return -pthread_atfork(prepare, parent, child);
}

/* Adaptive: a contended lock spins a little before it sleeps. kmm's
 * critical sections are short (list operations, a copy of at most a page),
 * and on 2 cores a sleeping waiter costs two futex calls where the holder
 * is about to let go (zsmalloc's two-thread store reads ran at 0.75x of one
 * thread with plain mutexes). */
static void hosted_lock_init(struct kmm_lock *l)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init((pthread_mutex_t *)(void *)l, &a);
    pthread_mutexattr_destroy(&a);
}
static void hosted_lock_fini(struct kmm_lock *l) { pthread_mutex_destroy((pthread_mutex_t *)(void *)l); }
static void hosted_lock(struct kmm_lock *l) { pthread_mutex_lock((pthread_mutex_t *)(void *)l); }
static void hosted_unlock(struct kmm_lock *l) { pthread_mutex_unlock((pthread_mutex_t *)(void *)l); }

static void write_line(const char *line)
{
    size_t len = strlen(line);
    char buf[512];
    if (len > sizeof(buf) - 1)
        len = sizeof(buf) - 1;
    memcpy(buf, line, len);
    buf[len] = '\n';
    ssize_t rc = write(STDERR_FILENO, buf, len + 1);
    (void)rc;
}

static void hosted_report(void *ctx, const char *line)
{
    (void)ctx;
    write_line(line);
}

static void hosted_error(int err) { errno = err; }

static void hosted_fatal(void *ctx, const char *msg)
{
    (void)ctx;
    write_line(msg);
    abort();
}

static pthread_key_t exit_key;
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;

static void on_thread_exit(void *arg)
{
    (void)arg;
    kmm_thread_exit();
}

static void make_exit_key(void) { pthread_key_create(&exit_key, on_thread_exit); }

static void hosted_thread_attach(void)
{
    pthread_once(&exit_key_once, make_exit_key);
    pthread_setspecific(exit_key, (void *)1);
}

/* membarrier(2), registered on first use: the kernel runs a full barrier
 * on every CPU running a thread of this process (the others pass one when
 * they are switched). Unavailable (kernel before 4.14, or a seccomp filter
 * that forbids it): the caller falls back to caches drained by their
 * owners. */
static int hosted_barrier_all(void *ctx)
{
    (void)ctx;
    static int state;   /* 0 not tried yet, 1 registered, -1 unavailable */
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s == 0) {
        /* registering twice is harmless: racing first callers both may */
        s = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    if (s < 0)
        return -1;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 ? 0 : -1;
}

const struct kmm_platform kmm_platform_hosted = {
    .name = "hosted-linux",
    .open = hosted_open,
    .close = hosted_close,
    .meta_alloc = hosted_meta_alloc,
    .meta_free = hosted_meta_free,
    .release = hosted_release,
    .populate = hosted_populate,
    .clock_ms = hosted_clock_ms,
    .resident = hosted_resident,
    .lock_init = hosted_lock_init,
    .lock_fini = hosted_lock_fini,
    .lock = hosted_lock,
    .unlock = hosted_unlock,
    .report = hosted_report,
    .error = hosted_error,
    .fatal = hosted_fatal,
    .vm_reserve = hosted_vm_reserve,
    .vm_unreserve = hosted_vm_unreserve,
    .vm_map = hosted_vm_map,
    .vm_unmap = hosted_vm_unmap,
    .vm_map_limit = hosted_vm_map_limit,
    .thread_attach = hosted_thread_attach,
    .barrier_all = hosted_barrier_all,
    .atfork = hosted_atfork,
    .fork_prepare = hosted_fork_prepare,
    .fork_parent = hosted_fork_parent,
    .fork_child = hosted_fork_child,
    .direct_unmap = hosted_direct_unmap,
    .direct_restore = hosted_direct_restore,
    .frames_zero = hosted_frames_zero,
    .frames_write = hosted_frames_write,
    .icache_sync = hosted_icache_sync,
    .secret_map = hosted_secret_map,
};
