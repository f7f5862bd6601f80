/* C23 free_aligned_sized() of an aligned_alloc() object told the right
 * alignment and a size from another size class. */
#include "../case.h"

int main(void)
{
    free_aligned_sized_fn *free_aligned_sized = (free_aligned_sized_fn *)require_symbol("free_aligned_sized");
    char *p = aligned_alloc(64, 64);
    if (!p)
        return CASE_SETUP_FAILED;
    announce_misuse(p);
    free_aligned_sized(p, 64, 2048);
    return 0;
}
