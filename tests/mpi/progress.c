/*
 * progress.c - who answers a remote kv_get when there is no progress thread.
 *
 * The header (kv_get): "May ask a remote rank; with a background progress thread
 * (MPI_THREAD_MULTIPLE) it answers at once, otherwise when it next enters a libftkv call."
 * Rank 1 holds the only replica (FTKV_REPLICAS=1) of a key rank 0 reads, while rank 1 is
 *  S1: inside kv_fence of ANOTHER store (waiting for rank 0 to join it);
 *  S2: inside a loop of local libftkv calls (kv_put / kv_get of its own keys) on the same store,
 *      until rank 0 tells it (application message) that its read is done.
 *  S3: only calling kv_stat and kv_locate, 20 ms apart: every library call serves what is
 *      waiting, so the get is answered within a second.
 * In every case rank 0's kv_get must return KV_OK well within ftkv_timeout. With a progress
 * thread (the MPI_THREAD_MULTIPLE case) this holds trivially.
 * Also: a rank idle in the application (2 s sleep) with a store open uses < 25% of a core
 * (DESIGN.md: an idle progress thread must not spin a core).
 */
//@case 2 TEST_THREAD_LEVEL=single FTKV_TIMEOUT=5 FTKV_REPLICAS=1
//@case 3 FTKV_PROGRESS=inline FTKV_TIMEOUT=5 FTKV_REPLICAS=1
//@case 2 FTKV_TIMEOUT=5 FTKV_REPLICAS=1
#include "common.h"

#define OWNER 1

static kv_store *open_or_fail(const char *name)
{
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, name, MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, name, strlen(name), "kv_open")) return NULL;
    return kv;
}

/* Whether rank 0 has sent its "read done" message with `tag` (received if so). */
static int reader_done(int tag)
{
    int flag = 0, done;
    MPI_Iprobe(0, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    if (flag) MPI_Recv(&done, 1, MPI_INT, 0, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return flag;
}

static void timed_get(kv_store *kv, const char *key, size_t klen, const unsigned char *val, size_t vlen,
                      double T, const char *scenario)
{
    unsigned char buf[256 + T_GUARD];
    double t0 = t_now();
    int ok = VERIFY(kv, key, klen, val, vlen, buf);
    double dt = t_now() - t0;
    printf("[progress rank 0] %s: remote kv_get %s after %.2f s\n", scenario, ok ? "ok" : "FAILED", dt);
    fflush(stdout);
    CHECK(dt < T, "%s: remote kv_get took %.2f s (ftkv_timeout %.0f s)", scenario, dt, T);
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "progress");
    double T = (double)t_env_long("FTKV_TIMEOUT", 60);
    if (t_size < 2) {
        if (t_rank == 0) printf("[progress] SKIP: needs 2 ranks\n");
        return t_finish();
    }
    unsigned char val[200];
    t_fill(val, sizeof val, 4711);
    char key[64];
    size_t klen;
    int rc;

    /* An idle store must not burn CPU (DESIGN.md: "An idle progress thread must not spin a core"):
     * every rank sleeps in the application with a store open; the process CPU time must stay low. */
    t_phase("idle CPU");
    {
        kv_store *idle = open_or_fail("progress-idle");
        if (idle) {
            struct timespec c0, c1;
            double w0 = t_now();
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
            t_sleep_us(2000000);
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
            double wall = t_now() - w0;
            double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
            printf("[progress rank %d] idle with a store open: %.3f s CPU in %.2f s\n", t_rank, cpu, wall);
            fflush(stdout);
            CHECK(cpu < 0.25 * wall, "idle store used %.3f s of CPU in %.2f s (progress thread %llu)", cpu,
                  wall, (unsigned long long)STAT(idle, KV_STAT_PROGRESS_THREAD));
            rc = kv_close(&idle);
            CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(idle)");
        }
    }

    /* S1: the owner waits in kv_fence of another store. */
    t_phase("S1: owner inside kv_fence of another store");
    kv_store *a = open_or_fail("progress-a"), *b = open_or_fail("progress-b");
    if (a && b) {
        if (t_rank == 0)
            printf("[progress] progress thread: %llu\n",
                   (unsigned long long)STAT(a, KV_STAT_PROGRESS_THREAD));
        klen = t_key_on(a, OWNER, "s1", key);
        if (t_rank == OWNER) {
            rc = kv_put(a, key, klen, val, sizeof val);
            CHECK_RC(a, rc, KV_OK, key, klen, "kv_put");
        }
        rc = kv_fence(a);
        CHECK_RC(a, rc, KV_OK, "", 0, "kv_fence(a)");
        if (t_rank == 0) timed_get(a, key, klen, val, sizeof val, T, "S1");
        rc = kv_fence(b); /* rank 1 is here while rank 0 reads from store a */
        CHECK_RC(b, rc, KV_OK, "", 0, "kv_fence(b)");
        rc = kv_fence(a);
        CHECK_RC(a, rc, KV_OK, "", 0, "kv_fence(a)");
    }
    rc = kv_close(&a);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(a)");
    rc = kv_close(&b);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(b)");

    /* S2: the owner keeps calling local libftkv functions on the same store. */
    t_phase("S2: owner inside local kv_put/kv_get calls");
    MPI_Barrier(MPI_COMM_WORLD); /* independent of how S1 ended */
    kv_store *c = open_or_fail("progress-c");
    if (c) {
        klen = t_key_on(c, OWNER, "s2", key);
        if (t_rank == OWNER) {
            rc = kv_put(c, key, klen, val, sizeof val);
            CHECK_RC(c, rc, KV_OK, key, klen, "kv_put");
        }
        rc = kv_fence(c);
        CHECK_RC(c, rc, KV_OK, "", 0, "kv_fence(c)");
        if (t_rank == 0) {
            timed_get(c, key, klen, val, sizeof val, T, "S2");
            int done = 1;
            MPI_Send(&done, 1, MPI_INT, OWNER, 77, MPI_COMM_WORLD);
        } else if (t_rank == OWNER) {
            double deadline = t_now() + 3 * T;
            long calls = 0;
            for (;;) {
                char mine[32];
                unsigned char got[8];
                size_t glen;
                int n = (int)(calls % 16);
                size_t mlen = (size_t)sprintf(mine, "own/%d", n);
                rc = kv_put(c, mine, mlen, &n, sizeof n);
                CHECK_RC(c, rc, KV_OK, mine, mlen, "kv_put(own key)");
                rc = kv_get(c, mine, mlen, got, sizeof got, &glen);
                CHECK_RC(c, rc, KV_OK, mine, mlen, "kv_get(own key)");
                calls++;
                if (reader_done(77)) break;
                if (t_now() > deadline) {
                    CHECK(0, "S2: rank 0 never reported its read done (%ld local calls made)", calls);
                    break;
                }
                if (calls % 64 == 0) t_sleep_us(100);
            }
        }
        rc = kv_fence(c);
        CHECK_RC(c, rc, KV_OK, "", 0, "kv_fence(c)");

        /* S3: the owner only asks kv_stat and kv_locate, 20 ms apart: every call serves. */
        t_phase("S3: owner inside kv_stat/kv_locate only");
        klen = t_key_on(c, OWNER, "s3", key);
        if (t_rank == OWNER) CHECK_RC(c, kv_put(c, key, klen, val, sizeof val), KV_OK, key, klen, "kv_put");
        rc = kv_fence(c);
        CHECK_RC(c, rc, KV_OK, "", 0, "kv_fence(c)");
        if (t_rank == 0) {
            double t0 = t_now();
            timed_get(c, key, klen, val, sizeof val, T, "S3");
            CHECK(t_now() - t0 < 1.0, "S3: the owner's kv_stat/kv_locate calls did not serve the get at once");
            int done = 1;
            MPI_Send(&done, 1, MPI_INT, OWNER, 78, MPI_COMM_WORLD);
        } else if (t_rank == OWNER) {
            double deadline = t_now() + 3 * T;
            for (long calls = 0;; calls++) {
                uint64_t v;
                int ranks[4], n;
                if (calls % 2) CHECK_RC(c, kv_stat(c, KV_STAT_LOCAL_KEYS, &v), KV_OK, "", 0, "kv_stat");
                else CHECK_RC(c, kv_locate(c, key, klen, ranks, 4, &n), KV_OK, key, klen, "kv_locate");
                if (reader_done(78)) break;
                if (t_now() > deadline) {
                    CHECK(0, "S3: rank 0 never reported its read done");
                    break;
                }
                t_sleep_us(20000);
            }
        }
        rc = kv_fence(c);
        CHECK_RC(c, rc, KV_OK, "", 0, "kv_fence(c)");
    }
    rc = kv_close(&c);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close(c)");
    return t_finish();
}
