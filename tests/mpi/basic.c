/*
 * basic.c - put / get / overwrite / delete / re-put across ranks, byte for byte, and kv_get's
 * buffer contract (KV_ETOOSMALL, buf == NULL, bigger buffers, zero-length values, guard bytes).
 *
 * Every rank writes TEST_NKEYS (default 200) keys "r<rank>/k<i>" whose lengths (0, 1, 127, 128,
 * 4096, ~100000 and random) and bytes depend on (rank, i, round); after each kv_fence every rank
 * reads every key of every rank. With FTKV_CONSISTENCY=sequential it also checks that puts are
 * visible on other ranks without a fence.
 *
 * Below MPI_THREAD_MULTIPLE (or with FTKV_PROGRESS=inline) remote requests are only served inside
 * library calls, so every phase ends with kv_fence (never an application barrier) while other
 * ranks may still be reading.
 */
//@case 1
//@case 2
//@case 2 FTKV_REPLICAS=1
//@case 4
//@case 8 TEST_NKEYS=100
//@case 8 TEST_NKEYS=60 TEST_THREAD_LEVEL=single
//@case 4 FTKV_REPLICAS=1
//@case 4 FTKV_REPLICAS=3
//@case 4 FTKV_CONSISTENCY=sequential
//@case 4 FTKV_CONSISTENCY=sequential TEST_THREAD_LEVEL=single
//@case 2 TEST_THREAD_LEVEL=single
//@case 4 TEST_THREAD_LEVEL=single
//@case 4 TEST_THREAD_LEVEL=funneled
//@case 4 FTKV_PROGRESS=inline
//@case 4 FTKV_PROGRESS=thread
//@case 4 FTKV_TEST_BATCH_BYTES=300
#include "common.h"

#define BIG 100000
#define SCRATCH (2 * BIG + 4096)

static int nkeys;

static size_t value_len(int r, int i, int round)
{
    static const size_t fixed[] = {0, 1, 127, 128, 4096};
    if ((i + round) % 40 == 5) return (size_t)BIG + (size_t)r; /* ~100000 bytes, rank-dependent */
    int j = (i + 7 * round) % 10;
    if (j < 5) return fixed[j];
    return (size_t)(t_tag((uint64_t)r, (uint64_t)i, (uint64_t)round, 17) % 700);
}

static void value_of(int r, int i, int round, unsigned char *buf, size_t *len)
{
    *len = value_len(r, i, round);
    t_fill(buf, *len, t_tag((uint64_t)r, (uint64_t)i, (uint64_t)round, 0x5eed));
}

static size_t key_of(int r, int i, char *key)
{
    return (size_t)sprintf(key, "r%d/k%d", r, i);
}

/* Which round's value key i (of any rank) holds after `phase`; 0 = deleted. */
static int round_after(int i, int phase)
{
    int round = 1;
    if (phase >= 2 && i % 3 == 0) round = 2;
    if (phase >= 3 && i % 5 == 1) round = 0;
    if (phase >= 4 && i % 5 == 1) round = 3;
    return round;
}

static unsigned char *expbuf, *scratch;

/* Every rank reads every key of every rank and compares with the state after `phase`. */
static void verify_all(kv_store *kv, int phase)
{
    char key[64];
    for (int d = 0; d < t_size; d++) {
        int r = (t_rank + d) % t_size;
        for (int i = 0; i < nkeys; i++) {
            size_t klen = key_of(r, i, key), vlen;
            int round = round_after(i, phase);
            if (round == 0) {
                VERIFY(kv, key, klen, NULL, 0, scratch);
            } else {
                value_of(r, i, round, expbuf, &vlen);
                VERIFY(kv, key, klen, expbuf, vlen, scratch);
            }
        }
    }
}

static void fence(kv_store *kv, const char *why)
{
    int rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, why, strlen(why), "kv_fence");
    if (!t_env_is("FTKV_CONSISTENCY", "sequential")) {
        uint64_t pending = STAT(kv, KV_STAT_PENDING_OPS);
        CHECK(pending == 0, "KV_STAT_PENDING_OPS = %llu after kv_fence, expected 0",
              (unsigned long long)pending);
    }
}

/* Put (round) values for the keys of this rank selected by pick(i); read-your-writes at once. */
static void put_round(kv_store *kv, int round, int (*pick)(int))
{
    char key[64];
    size_t vlen;
    int n = 0;
    for (int i = 0; i < nkeys; i++) {
        if (!pick(i)) continue;
        size_t klen = key_of(t_rank, i, key);
        value_of(t_rank, i, round, expbuf, &vlen);
        int rc = kv_put(kv, key, klen, expbuf, vlen);
        if (!CHECK_RC(kv, rc, KV_OK, key, klen, "kv_put")) continue;
        n++;
        /* kv_put copied the bytes: scribble over the caller's buffers before reading back. */
        memset(expbuf, 0x3c, vlen);
        memset(key, 'Z', klen);
        klen = key_of(t_rank, i, key);
        value_of(t_rank, i, round, expbuf, &vlen);
        VERIFY(kv, key, klen, expbuf, vlen, scratch);
    }
    if (n > 0 && !t_env_is("FTKV_CONSISTENCY", "sequential")) {
        uint64_t pending = STAT(kv, KV_STAT_PENDING_OPS);
        CHECK(pending > 0 && pending != (uint64_t)-1,
              "KV_STAT_PENDING_OPS = %llu after %d puts and no fence, expected > 0",
              (unsigned long long)pending, n);
    }
    /* Read-your-writes again after all puts (the value buffer was reused meanwhile). */
    for (int i = 0; i < nkeys; i++) {
        if (!pick(i)) continue;
        size_t klen = key_of(t_rank, i, key);
        value_of(t_rank, i, round, expbuf, &vlen);
        VERIFY(kv, key, klen, expbuf, vlen, scratch);
    }
}

static int pick_all(int i) { (void)i; return 1; }
static int pick_overwrite(int i) { return i % 3 == 0; }
static int pick_deleted(int i) { return i % 5 == 1; }

/* kv_get's buffer contract on a key of another rank (or our own with one rank). */
static void buffer_contract(kv_store *kv)
{
    char key[64];
    int r = (t_rank + 1) % t_size;
    int checked_small = 0;
    for (int i = 0; i < nkeys && i < 60; i++) {
        size_t klen = key_of(r, i, key), vlen;
        int round = round_after(i, 4);
        value_of(r, i, round, expbuf, &vlen);
        size_t got;
        int rc;

        /* buf == NULL: length only, with bufsize 0 and with a bogus big bufsize. */
        got = 12345;
        rc = kv_get(kv, key, klen, NULL, 0, &got);
        if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get(buf=NULL, bufsize=0)"))
            CHECK(got == vlen, "kv_get(buf=NULL) '%s': valuelen %zu, expected %zu", key, got, vlen);
        got = 12345;
        rc = kv_get(kv, key, klen, NULL, (size_t)1 << 40, &got);
        if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get(buf=NULL, bufsize=2^40)"))
            CHECK(got == vlen, "kv_get(buf=NULL) '%s': valuelen %zu, expected %zu", key, got, vlen);

        /* One byte short: KV_ETOOSMALL, true length, nothing written. */
        if (vlen > 0) {
            memset(scratch, T_GUARD_BYTE, vlen - 1 + T_GUARD);
            got = 0;
            rc = kv_get(kv, key, klen, scratch, vlen - 1, &got);
            CHECK_RC(kv, rc, KV_ETOOSMALL, key, klen, "kv_get(bufsize = len - 1)");
            CHECK(got == vlen, "KV_ETOOSMALL '%s': valuelen %zu, expected the true length %zu", key,
                  got, vlen);
            CHECK(t_guard_ok(scratch, vlen - 1 + T_GUARD),
                  "KV_ETOOSMALL '%s' (len %zu): the buffer was written", key, vlen);
            /* bufsize 0 with a real buffer */
            memset(scratch, T_GUARD_BYTE, T_GUARD);
            got = 0;
            rc = kv_get(kv, key, klen, scratch, 0, &got);
            CHECK_RC(kv, rc, KV_ETOOSMALL, key, klen, "kv_get(bufsize = 0)");
            CHECK(got == vlen, "KV_ETOOSMALL '%s' (bufsize 0): valuelen %zu, expected %zu", key, got,
                  vlen);
            CHECK(t_guard_ok(scratch, T_GUARD), "KV_ETOOSMALL '%s' (bufsize 0): buffer written", key);
            checked_small++;
        } else {
            /* Zero-length value: fits in a zero-size buffer, with buf NULL or not. */
            got = 99;
            memset(scratch, T_GUARD_BYTE, T_GUARD);
            rc = kv_get(kv, key, klen, scratch, 0, &got);
            if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get(zero-length value, bufsize 0)"))
                CHECK(got == 0, "zero-length value '%s': valuelen %zu", key, got);
            CHECK(t_guard_ok(scratch, T_GUARD), "zero-length value '%s': buffer written", key);
        }

        /* A bigger buffer than needed works; nothing past bufsize is touched. */
        size_t bufsize = vlen + 1000;
        memset(scratch, T_GUARD_BYTE, bufsize + T_GUARD);
        got = 0;
        rc = kv_get(kv, key, klen, scratch, bufsize, &got);
        if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get(bufsize = len + 1000)")) {
            CHECK(got == vlen, "kv_get(big buffer) '%s': valuelen %zu, expected %zu", key, got, vlen);
            CHECK(got != vlen || memcmp(scratch, expbuf, vlen) == 0,
                  "kv_get(big buffer) '%s': bytes differ", key);
            CHECK(t_guard_ok(scratch + bufsize, T_GUARD), "kv_get(big buffer) '%s': wrote past bufsize",
                  key);
        }

        /* valuelen == NULL is allowed. */
        memset(scratch, T_GUARD_BYTE, vlen + T_GUARD);
        rc = kv_get(kv, key, klen, scratch, vlen, NULL);
        if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get(valuelen = NULL)"))
            CHECK(memcmp(scratch, expbuf, vlen) == 0, "kv_get(valuelen=NULL) '%s': bytes differ", key);
    }
    CHECK(checked_small > 0, "no non-empty value was checked for KV_ETOOSMALL");

    /* A missing key: KV_ENOTFOUND and *valuelen = 0, whatever the buffer. */
    size_t got = 77;
    int rc = kv_get(kv, "no/such/key", 11, NULL, 0, &got);
    CHECK_RC(kv, rc, KV_ENOTFOUND, "no/such/key", 11, "kv_get(missing, buf NULL)");
    CHECK(got == 0, "missing key: valuelen %zu, expected 0", got);
    got = 77;
    memset(scratch, T_GUARD_BYTE, 100 + T_GUARD);
    rc = kv_get(kv, "no/such/key", 11, scratch, 100, &got);
    CHECK_RC(kv, rc, KV_ENOTFOUND, "no/such/key", 11, "kv_get(missing)");
    CHECK(got == 0, "missing key: valuelen %zu, expected 0", got);
    CHECK(t_guard_ok(scratch, 100 + T_GUARD), "missing key: buffer written");

    /* Zero-length value of our own: put, read back at once. */
    char zkey[64];
    size_t zlen = (size_t)sprintf(zkey, "zero/%d", t_rank);
    rc = kv_put(kv, zkey, zlen, "", 0);
    CHECK_RC(kv, rc, KV_OK, zkey, zlen, "kv_put(zero-length)");
    rc = kv_put(kv, zkey, zlen, NULL, 0); /* NULL value with length 0 is a zero-length value */
    CHECK_RC(kv, rc, KV_OK, zkey, zlen, "kv_put(NULL, 0)");
    VERIFY(kv, zkey, zlen, expbuf, 0, scratch);
}

/*
 * Keys are byte strings compared by length too: "\x<r>", "\x<r>\0", "\x<r>\0\0", ... are
 * distinct keys. And one value of TEST_BIG_MB (default 8) MiB written by the last rank, read by all.
 */
static void binary_keys_and_large_value(kv_store *kv)
{
    unsigned char key[16], val[8];
    for (size_t len = 1; len <= 8; len++) {
        memset(key, 0, sizeof key);
        key[0] = (unsigned char)(0x80 + t_rank);
        memset(val, (int)len, sizeof val);
        int rc = kv_put(kv, key, len, val, len);
        CHECK_RC(kv, rc, KV_OK, key, len, "kv_put(binary key)");
    }
    size_t big = (size_t)t_env_long("TEST_BIG_MB", 8) << 20;
    if (big < (1 << 20)) big = 1 << 20;
    unsigned char *bigval = t_xmalloc(big + T_GUARD);
    /* lengths around Open MPI's eager/rendezvous thresholds (4 KiB shared memory, 64 KiB TCP) */
    static const size_t edges[] = {4095, 4097, 65535, 65536, 65537, 262144};
    char ekey[32];
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
        size_t elen = edges[e] + (size_t)t_rank;
        t_fill(bigval, elen, t_tag(7, e, (uint64_t)t_rank, 0));
        size_t eklen = (size_t)sprintf(ekey, "edge/%d/%zu", t_rank, e);
        int rc = kv_put(kv, ekey, eklen, bigval, elen);
        CHECK_RC(kv, rc, KV_OK, ekey, eklen, "kv_put(edge length)");
    }
    t_fill(bigval, big, 0xb16);
    if (t_rank == t_size - 1) {
        int rc = kv_put(kv, "big", 3, bigval, big);
        CHECK_RC(kv, rc, KV_OK, "big", 3, "kv_put(large value)");
    }
    fence(kv, "after binary keys");
    for (int d = 0; d < t_size; d++) {
        int r = (t_rank + d) % t_size;
        for (size_t len = 1; len <= 8; len++) {
            memset(key, 0, sizeof key);
            key[0] = (unsigned char)(0x80 + r);
            memset(val, (int)len, sizeof val);
            VERIFY(kv, key, len, val, len, scratch);
        }
        memset(key, 0, sizeof key);
        key[0] = (unsigned char)(0x80 + r);
        VERIFY(kv, key, 9, NULL, 0, scratch); /* never written */
    }
    unsigned char *got = t_xmalloc(big + T_GUARD);
    for (int d = 1; d <= t_size; d++) {
        int r = (t_rank + d) % t_size;
        for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
            size_t elen = edges[e] + (size_t)r;
            t_fill(bigval, elen, t_tag(7, e, (uint64_t)r, 0));
            size_t eklen = (size_t)sprintf(ekey, "edge/%d/%zu", r, e);
            VERIFY(kv, ekey, eklen, bigval, elen, got);
        }
    }
    t_fill(bigval, big, 0xb16);
    VERIFY(kv, "big", 3, bigval, big, got);
    free(got);
    free(bigval);
    fence(kv, "after large value");
}

/*
 * Sequential consistency: a put is visible on other ranks as soon as kv_put returns, without fence.
 * With a progress thread the owner answers at any time, so an application barrier is a clean
 * "all puts returned" point. Without one, ranks must stay inside the library: poll with kv_get
 * until every other rank's key shows up (bounded), then fence.
 */
static void sequential_visibility(kv_store *kv, int progress_thread)
{
    char key[64];
    unsigned char val[64];
    size_t klen = (size_t)sprintf(key, "seq/%d", t_rank);
    t_fill(val, sizeof val, t_tag((uint64_t)t_rank, 4242, 0, 0));
    int rc = kv_put(kv, key, klen, val, sizeof val);
    CHECK_RC(kv, rc, KV_OK, key, klen, "kv_put(sequential)");
    if (progress_thread) {
        MPI_Barrier(MPI_COMM_WORLD);
        for (int d = 1; d < t_size; d++) {
            int r = (t_rank + d) % t_size;
            klen = (size_t)sprintf(key, "seq/%d", r);
            t_fill(val, sizeof val, t_tag((uint64_t)r, 4242, 0, 0));
            VERIFY(kv, key, klen, val, sizeof val, scratch);
        }
    } else {
        double deadline = t_now() + 60;
        for (int d = 1; d < t_size; d++) {
            int r = (t_rank + d) % t_size;
            klen = (size_t)sprintf(key, "seq/%d", r);
            t_fill(val, sizeof val, t_tag((uint64_t)r, 4242, 0, 0));
            size_t got = 0;
            for (;;) {
                rc = kv_get(kv, key, klen, scratch, sizeof val, &got);
                if (rc != KV_ENOTFOUND || t_now() > deadline) break;
                t_sleep_us(1000);
            }
            if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get(sequential, no fence)"))
                CHECK(got == sizeof val && memcmp(scratch, val, sizeof val) == 0,
                      "sequential '%s': wrong value (len %zu)", key, got);
        }
    }
    fence(kv, "after sequential check");
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "basic");
    nkeys = (int)t_env_long("TEST_NKEYS", 200);
    expbuf = t_xmalloc(SCRATCH);
    scratch = t_xmalloc(SCRATCH + T_GUARD);

    t_phase("open");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "basic", MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, "basic", 5, "kv_open") || kv == NULL) {
        CHECK(rc != KV_OK || kv != NULL, "kv_open returned KV_OK but no handle");
        return t_finish();
    }
    CHECK(STAT(kv, KV_STAT_RANK) == (uint64_t)t_rank, "KV_STAT_RANK wrong");
    CHECK(STAT(kv, KV_STAT_SIZE) == (uint64_t)t_size, "KV_STAT_SIZE wrong");
    uint64_t reps = STAT(kv, KV_STAT_REPLICAS);
    CHECK(reps == (uint64_t)t_expected_replicas(t_size), "KV_STAT_REPLICAS = %llu, expected %d",
          (unsigned long long)reps, t_expected_replicas(t_size));
    uint64_t pth = STAT(kv, KV_STAT_PROGRESS_THREAD);
    if (t_level < MPI_THREAD_MULTIPLE)
        CHECK(pth == 0, "KV_STAT_PROGRESS_THREAD = %llu below MPI_THREAD_MULTIPLE",
              (unsigned long long)pth);
    if (t_env_is("FTKV_PROGRESS", "inline"))
        CHECK(pth == 0, "KV_STAT_PROGRESS_THREAD = %llu with FTKV_PROGRESS=inline",
              (unsigned long long)pth);
    if (t_env_is("FTKV_PROGRESS", "thread") && t_level == MPI_THREAD_MULTIPLE)
        CHECK(pth == 1, "KV_STAT_PROGRESS_THREAD = %llu with FTKV_PROGRESS=thread at MULTIPLE",
              (unsigned long long)pth);
    if (t_rank == 0) printf("[basic] progress thread: %llu\n", (unsigned long long)pth);

    t_phase("put round 1");
    put_round(kv, 1, pick_all);
    fence(kv, "after round 1");
    t_phase("verify round 1");
    verify_all(kv, 1);
    fence(kv, "after verify 1");

    t_phase("overwrite");
    put_round(kv, 2, pick_overwrite);
    fence(kv, "after overwrite");
    t_phase("verify overwrite");
    verify_all(kv, 2);
    fence(kv, "after verify 2");

    t_phase("delete");
    {
        char key[64];
        for (int i = 0; i < nkeys; i++) {
            if (!pick_deleted(i)) continue;
            size_t klen = key_of(t_rank, i, key);
            rc = kv_del(kv, key, klen);
            CHECK_RC(kv, rc, KV_OK, key, klen, "kv_del");
            VERIFY(kv, key, klen, NULL, 0, scratch); /* read-your-deletes */
            if (i % 2) { /* deleting again is not an error */
                rc = kv_del(kv, key, klen);
                CHECK_RC(kv, rc, KV_OK, key, klen, "kv_del (again)");
            }
        }
        size_t klen = (size_t)sprintf(key, "never/put/%d", t_rank);
        rc = kv_del(kv, key, klen);
        CHECK_RC(kv, rc, KV_OK, key, klen, "kv_del(never put)");
    }
    fence(kv, "after delete");
    t_phase("verify delete");
    verify_all(kv, 3);
    fence(kv, "after verify 3");

    t_phase("re-put deleted keys");
    put_round(kv, 3, pick_deleted);
    fence(kv, "after re-put");
    t_phase("verify re-put");
    verify_all(kv, 4);
    fence(kv, "after verify 4");

    t_phase("buffer contract");
    buffer_contract(kv);
    fence(kv, "after buffer contract");

    t_phase("binary keys and a large value");
    binary_keys_and_large_value(kv);

    if (t_size > t_expected_replicas(t_size)) {
        /* Some keys were on other ranks only, so somebody answered remote requests. */
        unsigned long long served = STAT(kv, KV_STAT_REQUESTS_SERVED), total = 0;
        MPI_Allreduce(&served, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (t_rank == 0) {
            printf("[basic] KV_STAT_REQUESTS_SERVED summed over ranks: %llu\n", total);
            CHECK(total > 0, "KV_STAT_REQUESTS_SERVED is 0 on every rank after remote reads");
        }
    }

    if (t_env_is("FTKV_CONSISTENCY", "sequential")) {
        t_phase("sequential visibility");
        sequential_visibility(kv, pth == 1);
    }

    t_phase("close");
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "basic", 5, "kv_close");
    CHECK(kv == NULL, "kv_close did not set the handle to NULL");
    free(expbuf);
    free(scratch);
    return t_finish();
}
