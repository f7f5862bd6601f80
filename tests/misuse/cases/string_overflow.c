/* A string that fills a small object's usable size with no terminator: a
 * later strlen() must stop at the object's end (a zero canary byte there),
 * not run on into the neighbours, which hold text of their own. Exits
 * CASE_BROKEN when strlen() ran past the end. */
#include "../case.h"
#include <malloc.h>
#include <string.h>

#define NEIGHBOURS 64

int main(void)
{
    char *objects[NEIGHBOURS];
    for (int i = 0; i < NEIGHBOURS; i++) {
        objects[i] = checked_malloc(SMALL_SIZE);
        memset(objects[i], 'b', malloc_usable_size(objects[i]));
    }
    char *p = objects[NEIGHBOURS / 2];
    size_t usable = malloc_usable_size(p);
    memset(p, 'a', usable);
    size_t len = strnlen(p, usable + 4096);
    fprintf(stderr, "string ran %zu bytes past the object\n", len - usable);
    return len == usable ? 0 : CASE_BROKEN;
}
