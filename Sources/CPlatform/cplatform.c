#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/mman.h>
#include "cplatform.h"

void *cplatform_mremap_grow(void *old, size_t old_size, size_t new_size) {
    void *p = mremap(old, old_size, new_size, MREMAP_MAYMOVE);
    return p == MAP_FAILED ? NULL : p;
}

int cplatform_start_writeback(int fd, long long offset, long long len) {
    return sync_file_range(fd, (off_t)offset, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

/* CRC32C. The hardware path runs 8 bytes per instruction; the table path is for CPUs without
 * SSE4.2 (and other architectures), so files stay readable anywhere. */
#include <pthread.h>
#include <string.h>

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
}

static uint32_t crc32c_soft(uint32_t c, const unsigned char *p, size_t len) {
    pthread_once(&crc32c_table_once, crc32c_build_table);
    while (len--) c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_hw(uint32_t c32, const unsigned char *p, size_t len) {
    uint64_t c = c32;
    while (len && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); len--; }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        len -= 8;
    }
    while (len--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

uint32_t cplatform_crc32c(uint32_t crc, const void *buf, size_t len) {
    uint32_t c = ~crc;
    if (len == 0 || buf == NULL) return crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_hw(c, buf, len);
#endif
    return ~crc32c_soft(c, buf, len);
}

/* ---- per-thread kv_store handle cache (see cplatform.h) ---- */
static uint64_t handle_changes; /* read and written with __atomic builtins */
struct handle_cache { const void *kv; void *object; uint64_t changes; };
/* initial-exec: read at a fixed offset from the thread pointer, not through __tls_get_addr (3% of
 * a cached get); 24 bytes fit the static TLS glibc keeps for libraries loaded with dlopen. */
static _Thread_local struct handle_cache handle_cache __attribute__((tls_model("initial-exec")));
static void (*handle_release)(void *object);
static pthread_key_t handle_cache_key;
static pthread_once_t handle_cache_key_once = PTHREAD_ONCE_INIT;

uint64_t cplatform_handles_changes(void) { return __atomic_load_n(&handle_changes, __ATOMIC_ACQUIRE); }
void cplatform_handles_changed(void) { __atomic_fetch_add(&handle_changes, 1, __ATOMIC_ACQ_REL); }

void *cplatform_handle_cached(const void *kv, uint64_t changes)
{
    struct handle_cache *c = &handle_cache;
    return c->kv == kv && c->changes == changes ? c->object : NULL;
}

/* Runs when a thread that cached a handle exits: drops the cache's reference. */
static void handle_cache_thread_exit(void *value)
{
    struct handle_cache *c = value;
    void *object = c->object;
    c->kv = NULL;
    c->object = NULL;
    if (object != NULL && handle_release != NULL) handle_release(object);
}

static void handle_cache_make_key(void) { pthread_key_create(&handle_cache_key, handle_cache_thread_exit); }

void *cplatform_handle_cache(const void *kv, void *object, uint64_t changes)
{
    struct handle_cache *c = &handle_cache;
    void *old = c->object;
    if (old == NULL) { /* first use on this thread: have its exit drop the reference */
        pthread_once(&handle_cache_key_once, handle_cache_make_key);
        pthread_setspecific(handle_cache_key, c);
    }
    c->kv = kv;
    c->object = object;
    c->changes = changes;
    return old;
}

void cplatform_handle_cache_set_release(void (*release)(void *object)) { handle_release = release; }
