/*
 * heartbeat.c - the failure detector must not suspect live ranks.
 *
 * Every rank opens a store, then stays away from the library for HB_IDLE seconds (default 6,
 * over seven times the default suspicion time): half the ranks sleep, the other half spin the
 * CPU (with 8 ranks on this machine's 2 cores, the progress threads that send heartbeats compete
 * with them). Afterwards no rank may report a failed rank (kv_failed), and a fence and every rank's
 * key must still work. With FTKV_PROGRESS=inline no rank is watched (a rank may compute for
 * minutes without calling the library), so none may be suspected either.
 * With HB_COMMIT_MIB=M, rank 0 then puts M MiB and the others 1 MiB, and kv_commit writes it
 * (fsynced) for longer than the suspicion time, the application thread holding the store's lock
 * the while: heartbeats must keep going (they are sent without the lock) and the watch of a rank
 * that was busy must not judge the silence it could not hear. No rank may be suspected.
 * scripts/soak-idle.sh runs the same for 10 minutes.
 */
//@case 8 timeout=90
//@case 4 FTKV_HEARTBEAT=0.05 FTKV_SUSPECT_AFTER=0.3 HB_COMMIT_MIB=96 FTKV_DIR=/tmp/ftkv-heartbeat-test FTKV_LOAD=none timeout=120
//@case 4 FTKV_PROGRESS=inline timeout=90
#include "common.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "heartbeat");
    kv_store *kv = t_open("heartbeat");
    if (kv == NULL) return t_finish();
    double idle = (double)t_env_long("HB_IDLE", 6);
    char key[64], val[64];
    size_t klen = (size_t)sprintf(key, "hb/%d", t_rank);
    size_t vlen = (size_t)sprintf(val, "alive %d", t_rank);
    CHECK_RC(kv, kv_put(kv, key, klen, val, vlen), KV_OK, key, klen, "kv_put");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", (size_t)0, "kv_fence");

    t_phase("away from the library");
    double t0 = now();
    if (t_rank % 2 == 0) {
        struct timespec ts = {(time_t)idle, (long)((idle - (time_t)idle) * 1e9)};
        nanosleep(&ts, NULL);
    } else {
        volatile unsigned long spin = 0;
        while (now() - t0 < idle) spin++;
    }
    MPI_Barrier(MPI_COMM_WORLD);

    long commit_mib = t_env_long("HB_COMMIT_MIB", 0);
    if (commit_mib > 0) {
        t_phase("a commit that writes for longer than the suspicion time");
        size_t chunk = 1 << 20;
        long mine = t_rank == 0 ? commit_mib : 1;
        unsigned char *v = t_xmalloc(chunk);
        for (long b = 0; b < mine; b++) {
            char k[64];
            size_t kl = (size_t)sprintf(k, "big/%d/%ld", t_rank, b);
            t_fill(v, chunk, (uint64_t)b);
            CHECK_RC(kv, kv_put(kv, k, kl, v, chunk), KV_OK, k, kl, "kv_put");
        }
        free(v);
        double c0 = now();
        uint64_t version = 0;
        CHECK_RC(kv, kv_commit(kv, &version), KV_OK, "", (size_t)0, "kv_commit");
        double ct = now() - c0;
        if (t_rank == 0) printf("heartbeat: kv_commit of %ld MiB on rank 0 took %.2f s\n", commit_mib, ct);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    t_phase("no rank suspected");
    int failed[64], n = -1;
    CHECK_RC(kv, kv_failed(kv, failed, 64, &n), KV_OK, "", (size_t)0, "kv_failed");
    CHECK(n == 0, "%d ranks suspected after %.0f s away from the library (first: %d)", n, idle, n > 0 ? failed[0] : -1);
    CHECK_RC(kv, kv_failed(kv, NULL, 0, &n), KV_OK, "", (size_t)0, "kv_failed counting only");
    CHECK_RC(kv, kv_failed(kv, NULL, 1, &n), KV_EINVAL, "", (size_t)0, "kv_failed with ranks NULL and maxranks 1");
    CHECK_RC(kv, kv_failed(kv, failed, 64, NULL), KV_EINVAL, "", (size_t)0, "kv_failed with count NULL");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", (size_t)0, "kv_fence after");
    for (int r = 0; r < t_size; r++) {
        char k[64], want[64], got[64];
        size_t kl = (size_t)sprintf(k, "hb/%d", r), wl = (size_t)sprintf(want, "alive %d", r), gl = 0;
        int rc = kv_get(kv, k, kl, got, sizeof got, &gl);
        CHECK_RC(kv, rc, KV_OK, k, kl, "kv_get after");
        CHECK(rc != KV_OK || (gl == wl && memcmp(got, want, wl) == 0), "key %s: wrong bytes", k);
    }
    if (t_rank == 0) printf("heartbeat: %d ranks, %.0f s away from the library: no rank suspected\n", t_size, idle);
    CHECK_RC(kv, kv_close(&kv), KV_OK, "", (size_t)0, "kv_close");
    MPI_Barrier(MPI_COMM_WORLD);
    if (commit_mib > 0 && t_rank == 0 && system("rm -rf /tmp/ftkv-heartbeat-test") != 0)
        printf("heartbeat: could not remove /tmp/ftkv-heartbeat-test\n");
    return t_finish();
}
