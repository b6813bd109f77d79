/* System calls the engine needs that Swift's Glibc module does not expose (they need _GNU_SOURCE).
 * Not part of the public API: the version script keeps these out of libftkv.so's exports. */
#ifndef FTKV_CPLATFORM_H
#define FTKV_CPLATFORM_H
#include <stddef.h>

/* mremap(MREMAP_MAYMOVE) of an anonymous mapping; NULL on failure. */
void *cplatform_mremap_grow(void *old, size_t old_size, size_t new_size);
#endif
