/* A large buffer shrunk by realloc() (in place, for an allocator that can),
 * then written just past its new usable size: the guard must follow the
 * new end, not stay behind the old one. */
#include "../case.h"
#include <malloc.h>

int main(void)
{
    char *p = checked_malloc(4 * LARGE_SIZE);
    char *q = realloc(p, LARGE_SIZE);
    if (!q)
        return CASE_SETUP_FAILED;
    size_t usable = malloc_usable_size(q);
    announce_misuse(q + usable);
    q[usable] = 'x';
    free(q);
    return 0;
}
