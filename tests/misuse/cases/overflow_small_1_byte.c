/* One byte written just past a small object's usable size, then the object
 * freed (a canary there is checked at free). */
#include "../case.h"
#include <malloc.h>

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    size_t usable = malloc_usable_size(p);
    announce_misuse(p);
    p[usable] = 'x';
    free(p);
    return 0;
}
