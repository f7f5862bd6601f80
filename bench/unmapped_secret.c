/* PLACEHOLDER (issue 15 in progress): the secret memory section. */
#include "unmapped.h"
void bench_unmapped_secret(const struct unmapped_opts *o) { (void)o; }
