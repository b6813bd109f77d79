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
