/* System calls the engine needs that Swift's Glibc module does not expose (they need _GNU_SOURCE).
 * Not part of the public API: the version script keeps these out of libftkv.so's exports. */
#ifndef FTKV_CPLATFORM_H
#define FTKV_CPLATFORM_H
#include <stddef.h>
#include <stdint.h>

/* mremap(MREMAP_MAYMOVE) of an anonymous mapping; NULL on failure. */
void *cplatform_mremap_grow(void *old, size_t old_size, size_t new_size);

/* Starts writeback of [offset, offset+len) of fd now (sync_file_range SYNC_FILE_RANGE_WRITE), so
 * the disk works while the caller prepares the next bytes; 0 or -1 with errno. */
int cplatform_start_writeback(int fd, long long offset, long long len);

/* CRC32C (Castagnoli) of len bytes, continuing from crc (0 to start; pass the previous result to
 * continue, as zlib's crc32). SSE4.2's crc32 instruction when the CPU has it, else a table. */
uint32_t cplatform_crc32c(uint32_t crc, const void *buf, size_t len);

/* Asks the CPU to start loading the cache line at p for a write soon; a hint (never faults, even
 * for a stale address), so a loop over many writes overlaps their cache misses. */
static inline void cplatform_prefetch(const void *p) { __builtin_prefetch(p, 1, 3); }

/* Each thread's last kv_store handle (Sources/FTKVCABI/Handles.swift): the handle value, the
 * object it stands for (one reference held by the cache) and the registry's change count when it
 * was looked up. A call on the same handle with the count unchanged skips the registry's lock. */
/* The registry's change count (every open and close adds one). */
uint64_t cplatform_handles_changes(void);
void cplatform_handles_changed(void);
/* This thread's cached object for kv if the count is still `changes`, else NULL. */
void *cplatform_handle_cached(const void *kv, uint64_t changes);
/* Caches object for kv on this thread; returns the object it replaces (its reference is the
 * caller's to drop), or NULL. */
void *cplatform_handle_cache(const void *kv, void *object, uint64_t changes);
/* How a thread that exits drops its cached object's reference (set once, before any caching). */
void cplatform_handle_cache_set_release(void (*release)(void *object));
#endif
