/* realloc() of a large buffer already freed. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    free(p);
    announce_misuse(p);
    void *q = realloc(p, 2 * LARGE_SIZE);
    (void)q;
    return 0;
}
