/* free() of a pointer into inaccessible memory the program mapped itself. */
#include "../case.h"
#include <sys/mman.h>

int main(void)
{
    free(checked_malloc(SMALL_SIZE));   /* the allocator is up */
    char *map = mmap(NULL, 16 * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return CASE_SETUP_FAILED;
    char *p = map + 4 * 4096;
    announce_misuse(p);
    free(p);
    return 0;
}
