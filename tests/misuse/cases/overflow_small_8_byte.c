/* Eight bytes written just past a small object's usable size, then the
 * object freed. */
#include "../case.h"
#include <malloc.h>
#include <string.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    size_t usable = malloc_usable_size(p);
    announce_misuse(p);
    memset(p + usable, 'x', 8);
    free(p);
    return 0;
}
