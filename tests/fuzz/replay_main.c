/* replay_main.c - runs a libFuzzer target (fuzz_page.c, fuzz_slab.c) as an ordinary program.
 *
 *   test_page_fuzz_replay FILE|DIR...   runs each file (each file of a
 *                                       directory) through the target once:
 *                                       crash reproduction and corpus replay
 *   test_page_fuzz_replay               runs N seeded random inputs of 1..4096
 *                                       bytes (N = $KMM_FUZZ_RUNS, default 2000;
 *                                       $KMM_SEED repeats a run)
 *
 * The target aborts with a message on the first mismatch.
 */
#include "kmm_test.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t total_bytes;

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(buf, len);
    total_bytes += len;
    free(buf);
    return 0;
}

/* A file, or every regular file in a directory (not recursive). Returns inputs run, or -1. */
static long run_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(sb.st_mode))
        return run_file(path) == 0 ? 1 : -1;
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    long count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char full[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
        if (stat(full, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (run_file(full) != 0) {
            closedir(d);
            return -1;
        }
        count++;
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long inputs = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            long n = run_path(argv[i]);
            if (n < 0)
                return 1;
            inputs += n;
        }
    } else {
        const char *env = getenv("KMM_FUZZ_RUNS");
        long runs = env ? strtol(env, NULL, 0) : 2000;
        uint64_t rng = kmm_test_seed("fuzz replay");
        static uint8_t buf[4096];
        for (long i = 0; i < runs; i++) {
            size_t len = 1 + (size_t)(kmm_test_rand(&rng) % sizeof(buf));
            for (size_t k = 0; k < len; k += 8) {
                uint64_t v = kmm_test_rand(&rng);
                memcpy(buf + k, &v, len - k < 8 ? len - k : 8);
            }
            LLVMFuzzerTestOneInput(buf, len);
            total_bytes += len;
            inputs++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("fuzz replay: OK, %ld inputs (%llu bytes), %.1f s\n", inputs, (unsigned long long)total_bytes,
           (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
