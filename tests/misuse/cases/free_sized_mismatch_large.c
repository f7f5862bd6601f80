/* C23 free_sized() of a large buffer told half its size. */
#include "../case.h"

int main(void)
{
    free_sized_fn *free_sized = (free_sized_fn *)require_symbol("free_sized");
    char *p = checked_malloc(LARGE_SIZE);
    announce_misuse(p);
    free_sized(p, LARGE_SIZE / 2);
    return 0;
}
