/* Valid free_sized() and free_aligned_sized() calls at sizes small and
 * large, including sizes that are not a size class: none may be reported. */
#include "../case.h"

int main(void)
{
    free_sized_fn *free_sized = (free_sized_fn *)require_symbol("free_sized");
    free_aligned_sized_fn *free_aligned_sized = (free_aligned_sized_fn *)require_symbol("free_aligned_sized");
    static const size_t sizes[] = {1, 8, 13, 16, 24, 100, 1000, 4000, 4096, 5000, LARGE_SIZE, LARGE_SIZE + 1};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t size = sizes[i];
        free_sized(checked_malloc(size), size);
        free_sized(calloc(1, size), size);
        static const size_t aligns[] = {16, 64, 4096, 8192};
        for (size_t j = 0; j < sizeof(aligns) / sizeof(aligns[0]); j++) {
            size_t rounded = (size + aligns[j] - 1) & ~(aligns[j] - 1);
            void *p = aligned_alloc(aligns[j], rounded);
            if (!p)
                return CASE_SETUP_FAILED;
            free_aligned_sized(p, aligns[j], rounded);
        }
    }
    free_sized(NULL, 16);
    return 0;
}
