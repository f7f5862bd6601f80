/* Eight bytes written just past a large buffer's usable size. */
#include "../case.h"
#include <malloc.h>
#include <string.h>

int main(void)
{
    char *p = checked_malloc(LARGE_SIZE);
    size_t usable = malloc_usable_size(p);
    announce_misuse(p + usable);
    memset(p + usable, 'x', 8);
    free(p);
    return 0;
}
