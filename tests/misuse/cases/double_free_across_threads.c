/* A small object freed by a worker thread, then again by the main thread:
 * the two frees land in different per-thread caches. */
#include "../case.h"
#include <pthread.h>

static void *free_in_thread(void *p)
{
    free(p);
    return NULL;
}

int main(void)
{
    char *p = checked_malloc(SMALL_SIZE);
    pthread_t worker;
    if (pthread_create(&worker, NULL, free_in_thread, p) != 0)
        return CASE_SETUP_FAILED;
    pthread_join(worker, NULL);
    announce_misuse(p);
    free(p);
    return 0;
}
