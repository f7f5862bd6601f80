/* malloc_usable_size() of a garbage pointer. */
#include "../case.h"
#include <malloc.h>
#include <stdint.h>

int main(void)
{
    void *volatile garbage = (void *)(uintptr_t)0x10;
    announce_misuse(garbage);
    volatile size_t n = malloc_usable_size(garbage);
    (void)n;
    return 0;
}
