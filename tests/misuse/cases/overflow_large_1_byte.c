/* One byte written just past a large buffer's usable size. */
#include "../case.h"
#include <malloc.h>

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    size_t usable = malloc_usable_size(p);
    announce_misuse(p + usable);
    p[usable] = 'x';
    free(p);
    return 0;
}
