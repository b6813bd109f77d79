/*
 * lifecycle.c - calls before MPI_Init and after MPI_Finalize, several stores at once, stores on
 * MPI_COMM_SELF and on a split communicator, and the Fortran entry point kv_open_f.
 *
 *  - before MPI_Init: kv_open -> KV_EMISUSE (handle NULL, kv_errmsg(NULL) says why); NULL-handle
 *    calls -> KV_EMISUSE; kv_strerror / kv_version / kv_errmsg work.
 *  - two stores with different names on one communicator, interleaved, never mix data; 16 stores
 *    open at once work;
 *  - a store on MPI_COMM_SELF per rank (same name on every rank) is private to that rank;
 *  - a store on MPI_Comm_split(rank % 2) works within each half, and the halves never mix;
 *  - on a communicator with WORLD's rank order reversed, ranks (KV_STAT_RANK, "higher rank wins")
 *    are those of the store's communicator;
 *  - kv_open_f uses exactly namelen bytes of a non-NUL-terminated name;
 *  - TEST_OPEN_CYCLES (default 100) open/put/close cycles leak nothing that breaks a later open;
 *  - after MPI_Finalize, a handle left open: calls -> KV_EMISUSE, kv_close sets it NULL (KV_EMISUSE
 *    or KV_OK), no crash; kv_open -> KV_EMISUSE.
 */
//@case 1
//@case 4
//@case 4 TEST_THREAD_LEVEL=single
//@case 3 FTKV_REPLICAS=3
#include "common.h"

static unsigned char scratch[4096 + T_GUARD];

static kv_store *open_or_fail(MPI_Comm comm, const char *name)
{
    kv_store *kv = NULL;
    int rc = kv_open(comm, name, MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, name, strlen(name), "kv_open") || kv == NULL) return NULL;
    return kv;
}

static void put_ok(kv_store *kv, const char *key, const void *val, size_t vlen)
{
    int rc = kv_put(kv, key, strlen(key), val, vlen);
    CHECK_RC(kv, rc, KV_OK, key, strlen(key), "kv_put");
}

static void fence_ok(kv_store *kv, const char *what)
{
    int rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, what, strlen(what), "kv_fence");
}

static size_t val_for(unsigned char *v, uint64_t a, uint64_t b, uint64_t c)
{
    size_t len = 1 + (size_t)(t_tag(a, b, c, 9) % 200);
    t_fill(v, len, t_tag(a, b, c, 10));
    return len;
}

static void before_init(void)
{
    t_current = "before MPI_Init";
    kv_store *kv = (kv_store *)(uintptr_t)0x1;
    int rc = kv_open(MPI_COMM_WORLD, "life", MPI_INFO_NULL, &kv);
    CHECK_RC(NULL, rc, KV_EMISUSE, "life", 4, "kv_open before MPI_Init");
    CHECK(kv == NULL, "kv_open before MPI_Init did not set *kv = NULL");
    const char *m = kv_errmsg(NULL);
    CHECK(m != NULL && m[0] != '\0', "kv_errmsg(NULL) empty after kv_open before MPI_Init");
    rc = kv_open_f(0, "life", 4, 0, &kv);
    CHECK_RC(NULL, rc, KV_EMISUSE, "life", 4, "kv_open_f before MPI_Init");
    CHECK_RC(NULL, kv_put(NULL, "k", 1, "v", 1), KV_EMISUSE, "k", 1, "kv_put(NULL) before MPI_Init");
    size_t len;
    CHECK_RC(NULL, kv_get(NULL, "k", 1, NULL, 0, &len), KV_EMISUSE, "k", 1, "kv_get(NULL) before MPI_Init");
    CHECK_RC(NULL, kv_close(NULL), KV_OK, "", 0, "kv_close(NULL) before MPI_Init");
    CHECK(kv_strerror(KV_ENOTFOUND) != NULL, "kv_strerror before MPI_Init");
    int ma = -1;
    CHECK(kv_version(&ma, NULL, NULL) != NULL && ma == FTKV_VERSION_MAJOR, "kv_version before MPI_Init");
    int init = 1;
    MPI_Initialized(&init);
    CHECK(!init, "libftkv initialised MPI by itself");
}

static void two_stores(void)
{
    t_phase("two stores on one communicator");
    kv_store *a = open_or_fail(MPI_COMM_WORLD, "life-a");
    kv_store *b = open_or_fail(MPI_COMM_WORLD, "life-b");
    if (!a || !b) {
        kv_close(&a);
        kv_close(&b);
        return;
    }
    unsigned char v[256];
    char key[64];
    int R = t_expected_replicas(t_size);
    /* Same keys in both stores, different values; interleaved; "only-a/<r>" only in a. */
    for (int i = 0; i < 50; i++) {
        sprintf(key, "k/%d/%d", t_rank, i);
        size_t n = val_for(v, 'a', (uint64_t)t_rank, (uint64_t)i);
        put_ok(a, key, v, n);
        n = val_for(v, 'b', (uint64_t)t_rank, (uint64_t)i);
        put_ok(b, key, v, n);
    }
    sprintf(key, "only-a/%d", t_rank);
    put_ok(a, key, "A", 1);
    fence_ok(a, "a");
    fence_ok(b, "b");

    for (int r = 0; r < t_size; r++) {
        for (int i = 0; i < 50; i += 7) {
            sprintf(key, "k/%d/%d", r, i);
            size_t n = val_for(v, 'a', (uint64_t)r, (uint64_t)i);
            VERIFY(a, key, strlen(key), v, n, scratch);
        }
        sprintf(key, "only-a/%d", r);
        VERIFY(a, key, strlen(key), (const unsigned char *)"A", 1, scratch);
    }
    fence_ok(a, "a verified");
    for (int r = 0; r < t_size; r++) {
        for (int i = 0; i < 50; i += 7) {
            sprintf(key, "k/%d/%d", r, i);
            size_t n = val_for(v, 'b', (uint64_t)r, (uint64_t)i);
            VERIFY(b, key, strlen(key), v, n, scratch);
        }
        sprintf(key, "only-a/%d", r);
        VERIFY(b, key, strlen(key), NULL, 0, scratch);
    }
    fence_ok(b, "b verified");

    /* Deleting in a leaves b alone. */
    for (int i = 0; i < 50; i += 2) {
        sprintf(key, "k/%d/%d", t_rank, i);
        int rc = kv_del(a, key, strlen(key));
        CHECK_RC(a, rc, KV_OK, key, strlen(key), "kv_del(a)");
    }
    fence_ok(a, "a deleted");
    fence_ok(b, "b");
    uint64_t ka = STAT(a, KV_STAT_LOCAL_KEYS), kb = STAT(b, KV_STAT_LOCAL_KEYS);
    unsigned long long mine[2] = {ka, kb}, tot[2] = {0, 0};
    MPI_Allreduce(mine, tot, 2, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    unsigned long long wa = (unsigned long long)R * (unsigned long long)t_size * 26;
    unsigned long long wb = (unsigned long long)R * (unsigned long long)t_size * 50;
    CHECK(tot[0] == wa, "store a: sum of KV_STAT_LOCAL_KEYS = %llu, expected %llu", tot[0], wa);
    CHECK(tot[1] == wb, "store b: sum of KV_STAT_LOCAL_KEYS = %llu, expected %llu", tot[1], wb);
    int r = (t_rank + 1) % t_size;
    for (int i = 0; i < 50; i++) {
        sprintf(key, "k/%d/%d", r, i);
        size_t n = val_for(v, 'b', (uint64_t)r, (uint64_t)i);
        VERIFY(b, key, strlen(key), v, n, scratch);
    }
    fence_ok(b, "b verified after delete in a");
    for (int i = 0; i < 50; i++) {
        sprintf(key, "k/%d/%d", r, i);
        size_t n = val_for(v, 'a', (uint64_t)r, (uint64_t)i);
        VERIFY(a, key, strlen(key), i % 2 == 0 ? NULL : v, n, scratch);
    }
    fence_ok(a, "a verified after delete");

    int rc = kv_close(&a);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(a)");
    /* b still works after a is closed */
    sprintf(key, "after-a/%d", t_rank);
    put_ok(b, key, "z", 1);
    fence_ok(b, "b after close a");
    sprintf(key, "after-a/%d", (t_rank + 1) % t_size);
    VERIFY(b, key, strlen(key), (const unsigned char *)"z", 1, scratch);
    rc = kv_close(&b);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(b)");
}

static void self_store(void)
{
    t_phase("store on MPI_COMM_SELF");
    kv_store *kv = open_or_fail(MPI_COMM_SELF, "life-self");
    if (!kv) return;
    CHECK(STAT(kv, KV_STAT_SIZE) == 1, "MPI_COMM_SELF store: KV_STAT_SIZE != 1");
    CHECK(STAT(kv, KV_STAT_RANK) == 0, "MPI_COMM_SELF store: KV_STAT_RANK != 0");
    CHECK(STAT(kv, KV_STAT_REPLICAS) == 1, "MPI_COMM_SELF store: KV_STAT_REPLICAS != 1");
    unsigned char v[256];
    char key[64];
    for (int i = 0; i < 40; i++) {
        sprintf(key, "same/%d", i); /* the same keys on every rank, private values */
        size_t n = val_for(v, 's', (uint64_t)t_rank, (uint64_t)i);
        put_ok(kv, key, v, n);
    }
    fence_ok(kv, "self");
    for (int i = 0; i < 40; i++) {
        sprintf(key, "same/%d", i);
        size_t n = val_for(v, 's', (uint64_t)t_rank, (uint64_t)i);
        VERIFY(kv, key, strlen(key), v, n, scratch);
    }
    int rc = kv_del(kv, "same/0", 6);
    CHECK_RC(kv, rc, KV_OK, "same/0", 6, "kv_del");
    fence_ok(kv, "self");
    VERIFY(kv, "same/0", 6, NULL, 0, scratch);
    uint64_t lk = STAT(kv, KV_STAT_LOCAL_KEYS);
    CHECK(lk == 39, "MPI_COMM_SELF store: KV_STAT_LOCAL_KEYS = %llu, expected 39", (unsigned long long)lk);
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(self)");
    /* Other ranks' self stores were independent: the application sees everyone finished. */
    MPI_Barrier(MPI_COMM_WORLD);
}

static void split_store(void)
{
    t_phase("store on a split communicator");
    int color = t_rank % 2;
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, color, t_rank, &half);
    int hrank, hsize;
    MPI_Comm_rank(half, &hrank);
    MPI_Comm_size(half, &hsize);
    kv_store *kv = open_or_fail(half, "life-half");
    if (kv) {
        CHECK(STAT(kv, KV_STAT_SIZE) == (uint64_t)hsize, "split store: KV_STAT_SIZE wrong");
        CHECK(STAT(kv, KV_STAT_RANK) == (uint64_t)hrank, "split store: KV_STAT_RANK wrong");
        unsigned char v[256];
        char key[64];
        for (int i = 0; i < 30; i++) {
            sprintf(key, "h/%d/%d", hrank, i); /* same key names in both halves */
            size_t n = val_for(v, (uint64_t)color, (uint64_t)hrank, (uint64_t)i);
            put_ok(kv, key, v, n);
        }
        sprintf(key, "only/%d", color);
        put_ok(kv, key, "c", 1);
        char cval = (char)('0' + hrank);
        put_ok(kv, "winner", &cval, 1); /* the highest rank of the half wins */
        fence_ok(kv, "half");
        for (int r = 0; r < hsize; r++)
            for (int i = 0; i < 30; i += 3) {
                sprintf(key, "h/%d/%d", r, i);
                size_t n = val_for(v, (uint64_t)color, (uint64_t)r, (uint64_t)i);
                VERIFY(kv, key, strlen(key), v, n, scratch);
            }
        sprintf(key, "h/%d/0", hsize); /* a key only the other half can have */
        VERIFY(kv, key, strlen(key), NULL, 0, scratch);
        sprintf(key, "only/%d", 1 - color);
        VERIFY(kv, key, strlen(key), NULL, 0, scratch);
        sprintf(key, "only/%d", color);
        VERIFY(kv, key, strlen(key), (const unsigned char *)"c", 1, scratch);
        cval = (char)('0' + hsize - 1);
        VERIFY(kv, "winner", 6, (const unsigned char *)&cval, 1, scratch);
        fence_ok(kv, "half verified");
        int rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(half)");
    }
    MPI_Comm_free(&half);
}

/* A communicator whose rank order is the reverse of MPI_COMM_WORLD's: ranks are the store's. */
static void reversed_store(void)
{
    t_phase("store on a reversed communicator");
    MPI_Comm rev;
    MPI_Comm_split(MPI_COMM_WORLD, 0, t_size - t_rank, &rev);
    kv_store *kv = open_or_fail(rev, "life-rev");
    if (kv) {
        uint64_t r = STAT(kv, KV_STAT_RANK);
        CHECK(r == (uint64_t)(t_size - 1 - t_rank), "reversed store: KV_STAT_RANK = %llu, expected %d",
              (unsigned long long)r, t_size - 1 - t_rank);
        int w = t_rank;
        put_ok(kv, "winner", &w, sizeof w);
        fence_ok(kv, "rev");
        /* the highest rank of the store's communicator (WORLD rank 0) wins */
        w = 0;
        VERIFY(kv, "winner", 6, (const unsigned char *)&w, sizeof w, scratch);
        fence_ok(kv, "rev verified");
        int rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(rev)");
    }
    MPI_Comm_free(&rev);
}

/* Many open/close cycles: nothing leaks that would make a later open fail. */
static void open_close_loop(void)
{
    t_phase("open/close loop");
    int n = (int)t_env_long("TEST_OPEN_CYCLES", 100);
    double t0 = t_now();
    for (int i = 0; i < n; i++) {
        kv_store *kv = NULL;
        int rc = kv_open(MPI_COMM_WORLD, i % 2 ? "loop-odd" : "loop-even", MPI_INFO_NULL, &kv);
        if (!CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_open (loop)") || !kv) break;
        char key[32];
        sprintf(key, "k%d", t_rank);
        put_ok(kv, key, &i, sizeof i);
        rc = kv_close(&kv); /* flushes like a fence */
        if (!CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close (loop)")) break;
    }
    if (t_rank == 0) printf("[lifecycle] %d open/put/close cycles in %.2f s\n", n, t_now() - t0);
}

/* Many stores open at once (each may run its own progress thread). */
static void many_stores(void)
{
    t_phase("many stores at once");
    enum { NS = 16 };
    kv_store *kv[NS];
    char name[32], key[32];
    double t0 = t_now();
    for (int i = 0; i < NS; i++) {
        sprintf(name, "many-%d", i);
        kv[i] = open_or_fail(MPI_COMM_WORLD, name);
    }
    for (int i = 0; i < NS; i++)
        if (kv[i]) {
            sprintf(key, "k/%d", t_rank);
            int v = i * 1000 + t_rank;
            put_ok(kv[i], key, &v, sizeof v);
        }
    for (int i = 0; i < NS; i++)
        if (kv[i]) fence_ok(kv[i], "many");
    for (int i = 0; i < NS; i++)
        if (kv[i]) {
            int r = (t_rank + 1 + i) % t_size, v = i * 1000 + r;
            sprintf(key, "k/%d", r);
            VERIFY(kv[i], key, strlen(key), (const unsigned char *)&v, sizeof v, scratch);
            fence_ok(kv[i], "many verified");
        }
    for (int i = NS - 1; i >= 0; i--) {
        int rc = kv_close(&kv[i]);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(many)");
    }
    if (t_rank == 0) printf("[lifecycle] %d stores open at once: %.2f s\n", NS, t_now() - t0);
}

static void fortran_open(void)
{
    t_phase("kv_open_f");
    kv_store *kv = (kv_store *)(uintptr_t)0x1;
    MPI_Fint fcomm = MPI_Comm_c2f(MPI_COMM_WORLD), finfo = MPI_Info_c2f(MPI_INFO_NULL);
    int rc = kv_open_f(fcomm, "fstoreXX/not part of the name", 0, finfo, &kv);
    CHECK_RC(NULL, rc, KV_EINVAL, "", 0, "kv_open_f(namelen 0)");
    CHECK(kv == NULL, "failed kv_open_f did not set *kv = NULL");
    rc = kv_open_f(fcomm, "fst/re", 6, finfo, &kv);
    CHECK_RC(NULL, rc, KV_EINVAL, "fst/re", 6, "kv_open_f('fst/re')");
    rc = kv_open_f(fcomm, "fstore", 6, finfo, NULL);
    CHECK_RC(NULL, rc, KV_EMISUSE, "", 0, "kv_open_f(kv = NULL)");
    /* Fortran strings are blank-padded, not NUL-terminated: only namelen bytes count. */
    rc = kv_open_f(fcomm, "fstore/not part of the name", 6, finfo, &kv);
    if (CHECK_RC(NULL, rc, KV_OK, "fstore", 6, "kv_open_f('fstore', 6)") && kv) {
        CHECK(STAT(kv, KV_STAT_SIZE) == (uint64_t)t_size, "kv_open_f store: KV_STAT_SIZE wrong");
        char key[32];
        sprintf(key, "f/%d", t_rank);
        put_ok(kv, key, "fortran", 7);
        fence_ok(kv, "fstore");
        sprintf(key, "f/%d", (t_rank + t_size - 1) % t_size);
        VERIFY(kv, key, strlen(key), (const unsigned char *)"fortran", 7, scratch);
        fence_ok(kv, "fstore verified");
        rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(fstore)");
    }
}

int main(int argc, char **argv)
{
    t_test = "lifecycle";
    before_init();
    t_init(&argc, &argv, "lifecycle");

    two_stores();
    self_store();
    split_store();
    reversed_store();
    many_stores();
    fortran_open();
    open_close_loop();

    t_phase("a store left open at MPI_Finalize");
    kv_store *dangling = open_or_fail(MPI_COMM_WORLD, "life-dangling");
    if (dangling) {
        put_ok(dangling, "d", "1", 1);
        fence_ok(dangling, "dangling");
    }
    /* Agree on the results so far (t_finish cannot be used: it finalises after agreeing). */
    long total = 0;
    MPI_Allreduce(&t_failures, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (t_rank == 0) {
        printf("[lifecycle] %ld failed checks before MPI_Finalize; finalising with a store open\n", total);
        fflush(stdout);
    }
    MPI_Finalize();
    t_current = "after MPI_Finalize";
    t_failures = 0;

    if (dangling) {
        char buf[4];
        size_t len = 9;
        uint64_t v;
        int ranks[4], n;
        CHECK_RC(NULL, kv_put(dangling, "d", 1, "2", 1), KV_EMISUSE, "d", 1, "kv_put after MPI_Finalize");
        CHECK_RC(NULL, kv_get(dangling, "d", 1, buf, sizeof buf, &len), KV_EMISUSE, "d", 1,
                 "kv_get after MPI_Finalize");
        CHECK_RC(NULL, kv_del(dangling, "d", 1), KV_EMISUSE, "d", 1, "kv_del after MPI_Finalize");
        CHECK_RC(NULL, kv_fence(dangling), KV_EMISUSE, "", 0, "kv_fence after MPI_Finalize");
        CHECK_RC(NULL, kv_stat(dangling, KV_STAT_SIZE, &v), KV_EMISUSE, "", 0, "kv_stat after MPI_Finalize");
        int rc = kv_locate(dangling, "d", 1, ranks, 4, &n);
        CHECK(rc == KV_EMISUSE || rc == KV_OK, "kv_locate after MPI_Finalize: rc %d (%s)", rc,
              t_strerror(rc));
        CHECK(kv_errmsg(dangling) != NULL, "kv_errmsg(handle) after MPI_Finalize is NULL");
        rc = kv_close(&dangling);
        CHECK(rc == KV_EMISUSE || rc == KV_OK, "kv_close after MPI_Finalize: rc %d (%s), expected "
              "KV_EMISUSE or KV_OK", rc, t_strerror(rc));
        CHECK(dangling == NULL, "kv_close after MPI_Finalize did not set *kv = NULL");
    }
    kv_store *kv = (kv_store *)(uintptr_t)0x1;
    int rc = kv_open(MPI_COMM_WORLD, "life", MPI_INFO_NULL, &kv);
    CHECK_RC(NULL, rc, KV_EMISUSE, "life", 4, "kv_open after MPI_Finalize");
    CHECK(kv == NULL, "kv_open after MPI_Finalize did not set *kv = NULL");
    CHECK(kv_errmsg(NULL) != NULL, "kv_errmsg(NULL) after MPI_Finalize is NULL");
    CHECK_RC(NULL, kv_put(NULL, "k", 1, "v", 1), KV_EMISUSE, "k", 1, "kv_put(NULL) after MPI_Finalize");
    CHECK(kv_strerror(KV_EMPI) != NULL, "kv_strerror after MPI_Finalize");
    CHECK(kv_version(NULL, NULL, NULL) != NULL, "kv_version after MPI_Finalize");

    if (t_failures) printf("[lifecycle rank %d] %ld failed checks after MPI_Finalize\n", t_rank, t_failures);
    else if (t_rank == 0 && total == 0) printf("[lifecycle] OK\n");
    fflush(stdout);
    return (total == 0 && t_failures == 0) ? 0 : 1;
}
