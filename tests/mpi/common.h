/*
 * common.h - helpers shared by the libftkv MPI integration tests (tests/mpi/NAME.c).
 *
 * Not a test itself (tests/run-mpi.sh compiles only the .c files). Include it first: it selects
 * POSIX 2008 so that setenv/unsetenv/nanosleep are declared under -std=c99.
 *
 * Conventions:
 *  - t_init() initialises MPI at the level named by TEST_THREAD_LEVEL (single|funneled|serialized|
 *    multiple; default multiple) and records rank/size of MPI_COMM_WORLD.
 *  - CHECK(cond, fmt, ...) records a failure with rank, file and line; CHECK_RC() also prints the
 *    key, kv_strerror() and kv_errmsg() of the handle. The first T_MAX_REPORTS failures of a rank are
 *    printed; all are counted.
 *  - t_finish() agrees on the failure count over MPI_COMM_WORLD, prints one summary line on rank 0,
 *    finalises MPI and returns the process exit code (0 only if no rank saw a failure).
 *  - t_phase() prints a progress marker on rank 0 (so a timeout shows where the test was).
 *  - Values are deterministic pseudo-random bytes: t_fill(buf, len, tag) depends only on (len, tag),
 *    so any rank can compute what any other rank wrote.
 */
#ifndef FTKV_TEST_COMMON_H
#define FTKV_TEST_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftkv.h"

#define T_MAX_REPORTS 40
#define T_GUARD 64            /* guard bytes after every buffer handed to kv_get */
#define T_GUARD_BYTE 0xA5

static int t_rank = -1;           /* rank in MPI_COMM_WORLD (-1 before t_init) */
static int t_size = 0;
static int t_level = -1;          /* thread level MPI provided */
static int t_requested = -1;      /* thread level requested */
static long t_failures = 0;
static const char *t_test = "test";
static const char *t_current = ""; /* current phase, printed with failures */

static inline void t_vreport(const char *file, int line, const char *fmt, va_list ap)
{
    t_failures++;
    if (t_failures > T_MAX_REPORTS) {
        if (t_failures == T_MAX_REPORTS + 1)
            fprintf(stderr, "[%s rank %d] (further failures counted, not printed)\n", t_test, t_rank);
        return;
    }
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "[%s rank %d] FAIL %s:%d [%s] %s\n", t_test, t_rank, file, line, t_current, msg);
    fflush(stderr);
}

static inline void t_report(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    t_vreport(file, line, fmt, ap);
    va_end(ap);
}

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) t_report(__FILE__, __LINE__, __VA_ARGS__);                              \
    } while (0)

/* A printable rendering of a key (binary bytes escaped, long keys cut). Rotates among 4 buffers. */
static inline const char *t_keystr(const void *key, size_t keylen)
{
    static char bufs[4][200];
    static int which = 0;
    char *out = bufs[which];
    which = (which + 1) % 4;
    if (key == NULL) {
        snprintf(out, 200, "(null)");
        return out;
    }
    const unsigned char *k = (const unsigned char *)key;
    size_t o = 0;
    for (size_t i = 0; i < keylen && o < 150; i++) {
        if (k[i] >= 32 && k[i] < 127 && k[i] != '\\') out[o++] = (char)k[i];
        else o += (size_t)snprintf(out + o, 200 - o, "\\x%02x", k[i]);
    }
    if (keylen > 0 && o >= 150) o += (size_t)snprintf(out + o, 200 - o, "...(%zu bytes)", keylen);
    out[o] = '\0';
    return out;
}

static inline const char *t_errmsg(const kv_store *kv)
{
    const char *m = kv_errmsg(kv);
    return m ? m : "(kv_errmsg returned NULL!)";
}

static inline const char *t_strerror(int rc)
{
    const char *s = kv_strerror(rc);
    return s ? s : "(kv_strerror returned NULL!)";
}

/* CHECK_RC(kv, rc, expected, key, keylen, "what"): rc must equal expected. Evaluates to 1 if it did. */
static inline int t_check_rc(const char *file, int line, const kv_store *kv, int rc, int expected,
                      const void *key, size_t keylen, const char *what)
{
    if (rc == expected) return 1;
    t_report(file, line, "%s: key '%s': got %d (%s), expected %d (%s); kv_errmsg: '%s'", what,
             t_keystr(key, keylen), rc, t_strerror(rc), expected, t_strerror(expected), t_errmsg(kv));
    return 0;
}
#define CHECK_RC(kv, rc, expected, key, keylen, what)                                        \
    t_check_rc(__FILE__, __LINE__, (kv), (rc), (expected), (key), (keylen), (what))

static inline void t_phase(const char *name)
{
    t_current = name;
    if (t_rank == 0) {
        printf("[%s] phase: %s\n", t_test, name);
        fflush(stdout);
    }
}

static inline const char *t_level_name(int level)
{
    switch (level) {
    case MPI_THREAD_SINGLE: return "single";
    case MPI_THREAD_FUNNELED: return "funneled";
    case MPI_THREAD_SERIALIZED: return "serialized";
    case MPI_THREAD_MULTIPLE: return "multiple";
    default: return "?";
    }
}

static inline long t_env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return dflt;
    char *end;
    long x = strtol(v, &end, 10);
    return (*end == '\0') ? x : dflt;
}

static inline int t_env_is(const char *name, const char *value)
{
    const char *v = getenv(name);
    return v != NULL && strcmp(v, value) == 0;
}

/* Replication factor the library should use: FTKV_REPLICAS if set, else the documented default 2. */
static inline int t_expected_replicas(int size)
{
    long r = t_env_long("FTKV_REPLICAS", 2);
    return (int)(r < size ? r : size);
}

static inline int t_requested_level(void)
{
    const char *lv = getenv("TEST_THREAD_LEVEL");
    if (lv == NULL || *lv == '\0' || strcmp(lv, "multiple") == 0) return MPI_THREAD_MULTIPLE;
    if (strcmp(lv, "single") == 0) return MPI_THREAD_SINGLE;
    if (strcmp(lv, "funneled") == 0) return MPI_THREAD_FUNNELED;
    if (strcmp(lv, "serialized") == 0) return MPI_THREAD_SERIALIZED;
    fprintf(stderr, "unknown TEST_THREAD_LEVEL '%s', using multiple\n", lv);
    return MPI_THREAD_MULTIPLE;
}

static inline void t_init(int *argc, char ***argv, const char *name)
{
    t_test = name;
    t_requested = t_requested_level();
    MPI_Init_thread(argc, argv, t_requested, &t_level);
    MPI_Comm_rank(MPI_COMM_WORLD, &t_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t_size);
    if (t_rank == 0) {
        printf("[%s] %d ranks, thread level requested %s provided %s", name, t_size,
               t_level_name(t_requested), t_level_name(t_level));
        const char *vars[] = {"FTKV_REPLICAS", "FTKV_CONSISTENCY", "FTKV_PROGRESS", "FTKV_TIMEOUT",
                              "FTKV_NODE", NULL};
        for (int i = 0; vars[i]; i++)
            if (getenv(vars[i])) printf(", %s=%s", vars[i], getenv(vars[i]));
        printf("\n");
        fflush(stdout);
    }
}

/* Agree on the outcome, finalise, return the exit code. Call with every store closed. */
static inline int t_finish(void)
{
    long total = 0;
    MPI_Allreduce(&t_failures, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (t_rank == 0) {
        if (total == 0) printf("[%s] OK\n", t_test);
        else printf("[%s] FAILED: %ld failed checks over all ranks\n", t_test, total);
        fflush(stdout);
    }
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}

/* ---- deterministic pseudo-random data ---- */

static inline uint64_t t_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline uint64_t t_tag(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    return t_mix(t_mix(t_mix(t_mix(a) ^ b) ^ c) ^ d);
}

static inline void t_fill(unsigned char *buf, size_t len, uint64_t tag)
{
    uint64_t s = t_mix(tag ^ (uint64_t)len);
    for (size_t i = 0; i < len; i++) {
        if ((i & 7) == 0) s = t_mix(s + i);
        buf[i] = (unsigned char)(s >> (8 * (i & 7)));
    }
}

static inline void *t_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "[%s rank %d] out of memory (%zu bytes)\n", t_test, t_rank, n);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return p;
}

/* Index of the first differing byte, or -1. */
static inline long t_first_diff(const unsigned char *a, const unsigned char *b, size_t n)
{
    if (memcmp(a, b, n) == 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) return (long)i;
    return -1;
}

static inline int t_guard_ok(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != T_GUARD_BYTE) return 0;
    return 1;
}

/*
 * Verify key holds exactly (expected, explen) - or, if expected == NULL, that it is missing
 * (KV_ENOTFOUND with *valuelen == 0). Uses a buffer of exactly explen bytes followed by guard bytes
 * (scratch must hold explen + T_GUARD). Returns 1 if everything held.
 */
static inline int t_verify(const char *file, int line, kv_store *kv, const void *key, size_t keylen,
                    const unsigned char *expected, size_t explen, unsigned char *scratch)
{
    size_t got = (size_t)-7;
    memset(scratch, T_GUARD_BYTE, explen + T_GUARD);
    int rc = kv_get(kv, key, keylen, scratch, explen, &got);
    if (expected == NULL) {
        if (rc != KV_ENOTFOUND || got != 0) {
            t_report(file, line, "get of missing key '%s': rc %d (%s), valuelen %zu; expected "
                     "KV_ENOTFOUND and 0; kv_errmsg: '%s'", t_keystr(key, keylen), rc, t_strerror(rc),
                     got, t_errmsg(kv));
            return 0;
        }
        return 1;
    }
    if (rc != KV_OK) {
        t_report(file, line, "get '%s' (expected %zu bytes): rc %d (%s), valuelen %zu; kv_errmsg: '%s'",
                 t_keystr(key, keylen), explen, rc, t_strerror(rc), got, t_errmsg(kv));
        return 0;
    }
    int ok = 1;
    if (got != explen) {
        t_report(file, line, "get '%s': valuelen %zu, expected %zu", t_keystr(key, keylen), got, explen);
        ok = 0;
    } else {
        long d = t_first_diff(scratch, expected, explen);
        if (d >= 0) {
            t_report(file, line, "get '%s': %zu bytes differ from the expected value, first at offset "
                     "%ld (got 0x%02x, expected 0x%02x)", t_keystr(key, keylen), explen, d,
                     scratch[d], expected[d]);
            ok = 0;
        }
    }
    if (!t_guard_ok(scratch + explen, T_GUARD)) {
        t_report(file, line, "get '%s': wrote past the end of a %zu-byte buffer", t_keystr(key, keylen),
                 explen);
        ok = 0;
    }
    return ok;
}
#define VERIFY(kv, key, keylen, expected, explen, scratch)                                   \
    t_verify(__FILE__, __LINE__, (kv), (key), (keylen), (expected), (explen), (scratch))

/* A "Field:   123 kB" line of a /proc file (/proc/self/status, /proc/self/smaps_rollup), in kB;
 * -1 if the file or the field is missing. `field` includes the colon. */
static inline long t_proc_kb(const char *path, const char *field)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0) kb = strtol(line + n, NULL, 10);
    fclose(f);
    return kb;
}

static inline double t_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void t_sleep_us(long us)
{
    struct timespec ts;
    ts.tv_sec = us / 1000000;
    ts.tv_nsec = (us % 1000000) * 1000;
    nanosleep(&ts, NULL);
}

static inline uint64_t t_stat(kv_store *kv, int what, const char *name)
{
    uint64_t v = (uint64_t)-1;
    int rc = kv_stat(kv, what, &v);
    if (rc != KV_OK) {
        t_report(__FILE__, __LINE__, "kv_stat(%s): rc %d (%s); kv_errmsg: '%s'", name, rc,
                 t_strerror(rc), t_errmsg(kv));
    }
    return v;
}
#define STAT(kv, what) t_stat((kv), (what), #what)

/* Opens the store `name` over MPI_COMM_WORLD (no info); a failure is a recorded check and NULL. */
static inline kv_store *t_open(const char *name)
{
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, name, MPI_INFO_NULL, &kv);
    CHECK_RC(NULL, rc, KV_OK, name, strlen(name), "kv_open");
    return rc == KV_OK ? kv : NULL;
}

/* 1 if MPI provided MPI_THREAD_MULTIPLE; else rank 0 prints "[test] SKIP: ..." (tests/run-mpi.sh
 * counts a skipped case as failed: a declared case must run) and 0 is returned. */
static inline int t_have_multiple(void)
{
    if (t_level == MPI_THREAD_MULTIPLE) return 1;
    if (t_rank == 0) printf("[%s] SKIP: MPI_THREAD_MULTIPLE not provided\n", t_test);
    return 0;
}

/* Writes into key (>= 64 bytes) the first "<tag>/<i>" whose primary replica is rank `owner`, and
 * returns its length (0, with a recorded failure, if none of 100000 candidates is). */
static inline size_t t_key_on(kv_store *kv, int owner, const char *tag, char *key)
{
    for (int i = 0; i < 100000; i++) {
        size_t klen = (size_t)sprintf(key, "%s/%d", tag, i);
        int ranks[8], n = 0;
        if (kv_locate(kv, key, klen, ranks, 8, &n) == KV_OK && n >= 1 && ranks[0] == owner) return klen;
    }
    CHECK(0, "no key found whose primary is rank %d", owner);
    return 0;
}

/* Every rank puts "<prefix><rank>" = value, kv_fence, then every rank reads every rank's key and
 * compares it byte for byte: the store works end to end (used after a disturbance). */
static inline void t_all_see(kv_store *kv, const char *prefix, const unsigned char *value, size_t len)
{
    char key[64];
    unsigned char buf[64 + T_GUARD];
    sprintf(key, "%s%d", prefix, t_rank);
    CHECK_RC(kv, kv_put(kv, key, strlen(key), value, len), KV_OK, key, strlen(key), "kv_put");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    for (int r = 0; r < t_size; r++) {
        sprintf(key, "%s%d", prefix, r);
        VERIFY(kv, key, strlen(key), value, len, buf);
    }
}

#endif /* FTKV_TEST_COMMON_H */
