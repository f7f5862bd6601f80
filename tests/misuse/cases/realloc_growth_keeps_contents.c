/* An array grown by realloc() a byte at a time to large sizes and back,
 * across every size class and the small/large boundary: the contents must
 * survive each move. Exits CASE_BROKEN when a byte changed. */
#include "../case.h"

int main(void)
{
    size_t size = 1;
    unsigned char *a = checked_malloc(size);
    a[0] = 0;
    while (size < 3 * LARGE_SIZE) {
        size_t grown = size + size / 3 + 1;
        unsigned char *b = realloc(a, grown);
        if (!b)
            return CASE_SETUP_FAILED;
        for (size_t i = 0; i < size; i++)
            if (b[i] != (unsigned char)(i * 7))
                return CASE_BROKEN;
        for (size_t i = size; i < grown; i++)
            b[i] = (unsigned char)(i * 7);
        a = b;
        size = grown;
    }
    while (size > 1) {
        size /= 2;
        a = realloc(a, size);
        if (!a)
            return CASE_SETUP_FAILED;
        for (size_t i = 0; i < size; i++)
            if (a[i] != (unsigned char)(i * 7))
                return CASE_BROKEN;
    }
    free(a);
    return 0;
}
