#define _GNU_SOURCE
#include <sys/mman.h>
#include "cplatform.h"

void *cplatform_mremap_grow(void *old, size_t old_size, size_t new_size) {
    void *p = mremap(old, old_size, new_size, MREMAP_MAYMOVE);
    return p == MAP_FAILED ? NULL : p;
}
