/* malloc(0) returns distinct non-null pointers, and later objects never
 * land on a live zero-size one. Exits CASE_BROKEN otherwise. */
#include "../case.h"

#define ZEROS 64

int main(void)
{
    char *zeros[ZEROS];
    for (int i = 0; i < ZEROS; i++) {
        zeros[i] = malloc(0);
        if (!zeros[i])
            return CASE_BROKEN;
        for (int j = 0; j < i; j++)
            if (zeros[j] == zeros[i])
                return CASE_BROKEN;
    }
    for (int i = 0; i < 512; i++) {
        char *q = checked_malloc(SMALL_SIZE);
        for (int j = 0; j < ZEROS; j++)
            if (q == zeros[j])
                return CASE_BROKEN;
        free(q);
    }
    for (int i = 0; i < ZEROS; i++)
        free(zeros[i]);
    return 0;
}
