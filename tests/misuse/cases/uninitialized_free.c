/* free() of a pointer read from memory that was never written: here a
 * small non-null garbage value. */
#include "../case.h"
#include <stdint.h>

int main(void)
{
    void *volatile garbage = (void *)(uintptr_t)0x10;
    announce_misuse(garbage);
    free(garbage);
    return 0;
}
