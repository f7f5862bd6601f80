/* PLACEHOLDER (issue 15 in progress): bench/unmapped's main and the fragmentation section. */
#include "harness.h"
#include "unmapped.h"
const char harness_prog[] = "bench/unmapped";
void bench_unmapped_fragmentation(const struct unmapped_opts *o) { (void)o; }
int main(void)
{
    struct unmapped_opts o = { .reps = 1 };
    bench_unmapped_fragmentation(&o);
    bench_unmapped_secret(&o);
    bench_unmapped_execmem(&o);
    return 0;
}
