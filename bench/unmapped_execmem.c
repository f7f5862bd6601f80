/* PLACEHOLDER (issue 15 in progress): the execmem section. */
#include "unmapped.h"
void bench_unmapped_execmem(const struct unmapped_opts *o) { (void)o; }
