/* free() of a pointer one page into a large buffer (page aligned itself,
 * so only the allocator's own records can tell). */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    announce_misuse(p + 4096);
    free(p + 4096);
    return 0;
}
