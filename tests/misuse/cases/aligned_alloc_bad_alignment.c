/* Alignments that are not a power of two: aligned_alloc() returns NULL with
 * EINVAL, posix_memalign() returns EINVAL (also for a power of two below
 * sizeof(void *)) and leaves its output alone. Exits CASE_BROKEN otherwise. */
#include "../case.h"
#include <errno.h>

int main(void)
{
    static const size_t bad[] = {3, 24, 48, 4097};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        errno = 0;
        void *p = aligned_alloc(bad[i], 2 * bad[i]);
        if (p || errno != EINVAL) {
            fprintf(stderr, "aligned_alloc(%zu): %p, errno %d\n", bad[i], p, errno);
            return CASE_BROKEN;
        }
        void *out = &out;
        int err = posix_memalign(&out, bad[i], 64);
        if (err != EINVAL || out != &out) {
            fprintf(stderr, "posix_memalign(%zu): %d\n", bad[i], err);
            return CASE_BROKEN;
        }
    }
    void *out = &out;
    if (posix_memalign(&out, sizeof(void *) / 2, 64) != EINVAL || out != &out)
        return CASE_BROKEN;
    return 0;
}
