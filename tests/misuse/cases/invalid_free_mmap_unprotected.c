/* free() of a pointer into readable, writable memory the program mapped
 * itself (an allocator that reads a header before the pointer finds one). */
#include "../case.h"
#include <string.h>
#include <sys/mman.h>

int main(void)
{
    free(checked_malloc(SMALL_SIZE));
    char *map = mmap(NULL, 16 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return CASE_SETUP_FAILED;
    memset(map, 0x41, 16 * 4096);
    char *p = map + 4 * 4096;
    announce_misuse(p);
    free(p);
    return 0;
}
