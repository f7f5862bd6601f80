/* C23 free_sized() told a size from another size class than the object's. */
#include "../case.h"

int main(void)
{
    free_sized_fn *free_sized = (free_sized_fn *)require_symbol("free_sized");
    char *p = checked_malloc(SMALL_SIZE);
    announce_misuse(p);
    free_sized(p, 512);
    return 0;
}
