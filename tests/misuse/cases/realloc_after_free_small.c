/* realloc() of a small object already freed. */
#include "../case.h"

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    free(p);
    announce_misuse(p);
    void *q = realloc(p, 2 * SMALL_SIZE);
    (void)q;
    return 0;
}
