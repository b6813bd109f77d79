/*
 * lateopen.c - kv_open when one rank arrives much later than ftkv_timeout.
 *
 * The header: kv_open is collective, may return KV_ETIMEDOUT, and "apart from kv == NULL and
 * comm == MPI_COMM_NULL, the result is agreed"; every wait has a deadline. Rank 0 sleeps
 * 3 * FTKV_TIMEOUT seconds before calling kv_open; the others call it at once.
 * Checks: every rank returns (no hang) within a bounded time; all ranks get the same code
 * (KV_ETIMEDOUT expected for the early ranks, hence for all); a failed open gives a NULL handle.
 * Then, after an application barrier, a new kv_open on every rank succeeds and the store works
 * (the failed attempt left nothing behind that confuses the next one). Run with and without
 * FTKV_NODE (without it the library finds nodes from MPI_Comm_split_type, another step of kv_open).
 */
//@case 2 FTKV_TIMEOUT=2 timeout=40
//@case 3 FTKV_TIMEOUT=2 TEST_THREAD_LEVEL=single timeout=40
//@case 2 FTKV_TIMEOUT=2 FTKV_NODE=samenode timeout=40
#include "common.h"

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "lateopen");
    double T = (double)t_env_long("FTKV_TIMEOUT", 60);
    if (t_size < 2) {
        if (t_rank == 0) printf("[lateopen] SKIP: needs 2 ranks\n");
        return t_finish();
    }

    t_phase("late kv_open");
    if (t_rank == 0) t_sleep_us((long)(3 * T * 1e6));
    kv_store *kv = (kv_store *)(uintptr_t)0x1;
    double t0 = t_now();
    int rc = kv_open(MPI_COMM_WORLD, "late", MPI_INFO_NULL, &kv);
    double dt = t_now() - t0;
    printf("[lateopen rank %d] kv_open: rc %d (%s) after %.2f s%s%s\n", t_rank, rc, t_strerror(rc), dt,
           rc ? "; " : "", rc ? t_errmsg(NULL) : "");
    fflush(stdout);
    CHECK(dt <= 2 * T + 3, "kv_open took %.2f s with ftkv_timeout %.0f s", dt, T);
    if (t_rank != 0)
        CHECK(rc == KV_ETIMEDOUT, "kv_open with rank 0 %.0f s late: rc %d (%s), expected KV_ETIMEDOUT",
              3 * T, rc, t_strerror(rc));
    if (rc != KV_OK) CHECK(kv == NULL, "failed kv_open did not set *kv = NULL");
    int lo = rc, hi = rc;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    CHECK(lo == hi, "kv_open result not agreed across ranks (min %d, max %d)", lo, hi);
    if (rc == KV_OK && kv != NULL) kv_close(&kv);
    MPI_Barrier(MPI_COMM_WORLD);

    t_phase("open again");
    kv = NULL;
    t0 = t_now();
    rc = kv_open(MPI_COMM_WORLD, "late2", MPI_INFO_NULL, &kv);
    dt = t_now() - t0;
    if (CHECK_RC(NULL, rc, KV_OK, "late2", 5, "kv_open after a timed-out kv_open") && kv) {
        t_all_see(kv, "k", (const unsigned char *)"v", 1);
        rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    }
    CHECK(dt <= T + 3, "second kv_open took %.2f s", dt);
    return t_finish();
}
