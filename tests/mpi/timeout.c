/*
 * timeout.c - every wait on another rank has a deadline (ftkv_timeout), and a late answer does
 * not confuse later calls.
 *
 * Rank 1 (the "slow" rank) holds the only replica of a key (FTKV_REPLICAS=1) and then stays out of
 * the library (application sleep) for 2 * FTKV_TIMEOUT + 1 seconds while rank 0 calls
 * TEST_TIMEOUT_OP=get (kv_get of that key, default) or put (kv_put of a key held by rank 1, with
 * FTKV_CONSISTENCY=sequential):
 *  - without a progress thread (TEST_THREAD_LEVEL=single or FTKV_PROGRESS=inline) nobody answers:
 *    the call must return KV_ETIMEDOUT after about FTKV_TIMEOUT seconds (not hang, not crash);
 *  - with a progress thread the slow rank's library answers at once: KV_OK within the deadline.
 * Then everyone meets at an application barrier.
 *  - TEST_TIMEOUT_RECOVER=1 (default): the store is still usable. The header documents KV_ETIMEDOUT
 *    as an ordinary result of the local calls kv_get / kv_put (not as the end of the handle), and
 *    lists no KV_ETIMEDOUT for kv_put with fence consistency; so kv_fence, kv_get and kv_put
 *    must work again once the slow rank is back, and the late answer must not confuse them.
 *  - TEST_TIMEOUT_RECOVER=0: only kv_close is called afterwards; it must return (whatever the
 *    code) within a bounded time on every rank and set the handle to NULL.
 */
//@case 2 TEST_THREAD_LEVEL=single FTKV_TIMEOUT=2 FTKV_REPLICAS=1 TEST_TIMEOUT_RECOVER=0
//@case 4 FTKV_PROGRESS=inline FTKV_TIMEOUT=2 FTKV_REPLICAS=1 TEST_TIMEOUT_RECOVER=0
//@case 3 FTKV_PROGRESS=inline FTKV_TIMEOUT=2 FTKV_REPLICAS=1 FTKV_CONSISTENCY=sequential TEST_TIMEOUT_OP=put TEST_TIMEOUT_RECOVER=0
//@case 2 FTKV_TIMEOUT=2 FTKV_REPLICAS=1
//@case 3 FTKV_TIMEOUT=2 FTKV_REPLICAS=1 FTKV_CONSISTENCY=sequential TEST_TIMEOUT_OP=put
//@case 2 TEST_THREAD_LEVEL=single FTKV_TIMEOUT=2 FTKV_REPLICAS=1
//@case 3 FTKV_PROGRESS=inline FTKV_TIMEOUT=2 FTKV_REPLICAS=1 FTKV_CONSISTENCY=sequential TEST_TIMEOUT_OP=put
#include "common.h"

#define SLOW 1

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "timeout");
    double T = (double)t_env_long("FTKV_TIMEOUT", 60);
    if (t_size < 2) {
        if (t_rank == 0) printf("[timeout] SKIP: needs 2 ranks\n");
        return t_finish();
    }
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "timeout", MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, "timeout", 7, "kv_open") || kv == NULL) return t_finish();
    int pth = (int)STAT(kv, KV_STAT_PROGRESS_THREAD);
    int op_put = t_env_is("TEST_TIMEOUT_OP", "put");
    int recover = (int)t_env_long("TEST_TIMEOUT_RECOVER", 1);
    CHECK(!op_put || t_env_is("FTKV_CONSISTENCY", "sequential"),
          "TEST_TIMEOUT_OP=put needs FTKV_CONSISTENCY=sequential");
    CHECK(STAT(kv, KV_STAT_REPLICAS) == 1, "this test needs FTKV_REPLICAS=1");
    if (t_rank == 0)
        printf("[timeout] progress thread %d, ftkv_timeout %.0f s, slow rank sleeps %.0f s, op %s, "
               "recover %d\n", pth, T, 2 * T + 1, op_put ? "put" : "get", recover);

    char key[64], key2[64], other[64];
    size_t klen = t_key_on(kv, SLOW, "to/slow", key);
    size_t klen2 = t_key_on(kv, SLOW, "to/seq", key2);
    unsigned char val[300], buf[300 + T_GUARD];
    t_fill(val, sizeof val, 99);

    t_phase("setup");
    if (t_rank == SLOW) {
        rc = kv_put(kv, key, klen, val, sizeof val);
        CHECK_RC(kv, rc, KV_OK, key, klen, "kv_put");
    }
    /* every rank writes one key held by some other rank, read back later */
    sprintf(other, "other/%d", t_rank);
    rc = kv_put(kv, other, strlen(other), val, 10 + (size_t)t_rank);
    CHECK_RC(kv, rc, KV_OK, other, strlen(other), "kv_put");
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
    /* kv_fence's barrier completes at different moments on different ranks: without this, rank 0
     * could send its request while the slow rank is still polling inside kv_fence (and serving). */
    MPI_Barrier(MPI_COMM_WORLD);

    t_phase("slow rank away");
    if (t_rank == SLOW) {
        t_sleep_us((long)((2 * T + 1) * 1e6)); /* outside the library */
    } else if (t_rank == 0) {
        size_t got = 0;
        double t0 = t_now();
        const char *what;
        if (op_put) {
            what = "sequential kv_put of a key held only by the absent rank";
            rc = kv_put(kv, key2, klen2, "late", 4);
        } else {
            what = "kv_get of a key held only by the absent rank";
            rc = kv_get(kv, key, klen, buf, sizeof buf, &got);
        }
        double dt = t_now() - t0;
        printf("[timeout rank 0] %s: rc %d (%s) after %.2f s\n", what, rc, t_strerror(rc), dt);
        if (pth) {
            if (CHECK_RC(kv, rc, KV_OK, op_put ? key2 : key, op_put ? klen2 : klen, what) && !op_put)
                CHECK(got == sizeof val && memcmp(buf, val, sizeof val) == 0, "kv_get: wrong value");
            CHECK(dt < T, "%s took %.2f s although a progress thread serves the owner", what, dt);
        } else if (CHECK_RC(kv, rc, KV_ETIMEDOUT, op_put ? key2 : key, op_put ? klen2 : klen, what)) {
            CHECK(dt >= 0.8 * T && dt <= T + 3, "%s: KV_ETIMEDOUT after %.2f s, ftkv_timeout is %.0f s",
                  what, dt, T);
            const char *m = kv_errmsg(kv);
            CHECK(m && m[0], "kv_errmsg empty after KV_ETIMEDOUT");
        }
        fflush(stdout);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    if (!recover) {
        t_phase("close after the timeout");
        double t0 = t_now();
        rc = kv_close(&kv);
        double dt = t_now() - t0;
        CHECK(rc == KV_OK || rc == KV_ETIMEDOUT || rc == KV_EMPI,
              "kv_close after a timeout: rc %d (%s)", rc, t_strerror(rc));
        CHECK(kv == NULL, "kv_close did not set *kv = NULL");
        CHECK(dt <= 2 * T + 5, "kv_close after a timeout took %.2f s", dt);
        printf("[timeout rank %d] kv_close after the timeout: rc %d (%s) after %.2f s\n", t_rank, rc,
               t_strerror(rc), dt);
        return t_finish();
    }

    t_phase("after the slow rank is back");
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence after the timeout");
    for (int rep = 0; rep < 3; rep++) {
        VERIFY(kv, key, klen, val, sizeof val, buf);
        for (int r = 0; r < t_size; r++) {
            sprintf(other, "other/%d", r);
            VERIFY(kv, other, strlen(other), val, 10 + (size_t)r, buf);
        }
    }
    if (op_put) {
        /* The timed-out put may or may not have landed: old (missing) or new, nothing else. */
        size_t got = 0;
        rc = kv_get(kv, key2, klen2, buf, sizeof buf, &got);
        CHECK(rc == KV_ENOTFOUND || (rc == KV_OK && got == 4 && memcmp(buf, "late", 4) == 0),
              "key of the timed-out put: rc %d (%s), len %zu; kv_errmsg: '%s'", rc, t_strerror(rc), got,
              t_errmsg(kv));
    }
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
    /* and writing still works */
    t_all_see(kv, "after/", (const unsigned char *)"ok", 2);

    t_phase("close");
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    return t_finish();
}
