/* kmm.h - the kernel's memory-allocator stack as a library: include this.
 * One header per layer lives under kmm/; see README.md, "Which allocator to use". */
#ifndef KMM_H
#define KMM_H

#include "kmm/core.h"
#include "kmm/page.h"
#include "kmm/platform.h"
#include "kmm/secret.h"
#include "kmm/stats.h"
#include "kmm/execmem.h"
#include "kmm/slab.h"
#include "kmm/unmapped.h"
#include "kmm/vm.h"
#include "kmm/zsmalloc.h"
#include "kmm/zstore.h"

#endif
