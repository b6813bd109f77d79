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
 * With FTKV_TEST_FAULT=open-stall on rank 0, rank 0 is late inside kv_open instead: between
 * duplicating the communicator and the first allgather, so the others give up on an allgather
 * that rank 0 then joins. Rank 0 must not hang in the blocking MPI_Comm_split_type that follows,
 * and gets KV_ETIMEDOUT like the others. The abandoned allgather completes inside the early
 * ranks' next MPI call, and must then not write into memory the library no longer owns. The
 * early ranks make that call with its likely targets filled with a pattern: the stack kv_open
 * used (under a 512 KiB array) and the heap blocks it freed (taken back with malloc, 8 of each
 * size up to 2 KiB), and check the pattern afterwards.
 */
//@case 2 FTKV_TIMEOUT=2 timeout=40
//@case 3 FTKV_TIMEOUT=2 TEST_THREAD_LEVEL=single timeout=40
//@case 2 FTKV_TIMEOUT=2 FTKV_NODE=samenode timeout=40
//@case 2 FTKV_TIMEOUT=2 FTKV_TEST_FAULT=open-stall FTKV_TEST_FAULT_RANK=0 timeout=40
//@case 3 FTKV_TIMEOUT=2 FTKV_TEST_FAULT=open-stall FTKV_TEST_FAULT_RANK=0 TEST_THREAD_LEVEL=single timeout=40
#include "common.h"

#define GRAB_SIZES 128 /* 16, 32, ... 2048 bytes */
#define GRAB_EACH 8

/* The application's next MPI calls (agreeing on kv_open's result), made with the stack kv_open
 * ran on and the heap blocks it freed filled with a pattern: returns how many bytes of the
 * pattern changed. */
static long __attribute__((noinline)) next_call_under_pattern(int rc, int *lo, int *hi)
{
    volatile unsigned char area[512 * 1024];
    for (size_t i = 0; i < sizeof area; i++) area[i] = 0x5A;
    static unsigned char *grabbed[GRAB_SIZES][GRAB_EACH];
    for (int s = 0; s < GRAB_SIZES; s++)
        for (int j = 0; j < GRAB_EACH; j++) {
            size_t n = (size_t)(s + 1) * 16;
            grabbed[s][j] = malloc(n);
            if (grabbed[s][j]) memset(grabbed[s][j], 0x5A, n);
        }
    *lo = *hi = rc;
    MPI_Allreduce(MPI_IN_PLACE, lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    long changed = 0;
    for (size_t i = 0; i < sizeof area; i++) changed += area[i] != 0x5A;
    for (int s = 0; s < GRAB_SIZES; s++)
        for (int j = 0; j < GRAB_EACH; j++) {
            if (grabbed[s][j] == NULL) continue;
            for (size_t i = 0; i < (size_t)(s + 1) * 16; i++) changed += grabbed[s][j][i] != 0x5A;
            free(grabbed[s][j]);
        }
    return changed;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "lateopen");
    double T = (double)t_env_long("FTKV_TIMEOUT", 60);
    if (t_size < 2) {
        if (t_rank == 0) printf("[lateopen] SKIP: needs 2 ranks\n");
        return t_finish();
    }

    int stall = t_env_is("FTKV_TEST_FAULT", "open-stall");
    t_phase(stall ? "kv_open with rank 0 stalled inside it" : "late kv_open");
    if (t_rank == 0 && !stall) t_sleep_us((long)(3 * T * 1e6));
    kv_store *kv = (kv_store *)(uintptr_t)0x1;
    double t0 = t_now();
    int rc = kv_open(MPI_COMM_WORLD, "late", MPI_INFO_NULL, &kv);
    double dt = t_now() - t0;
    printf("[lateopen rank %d] kv_open: rc %d (%s) after %.2f s%s%s\n", t_rank, rc, t_strerror(rc), dt,
           rc ? "; " : "", rc ? t_errmsg(NULL) : "");
    fflush(stdout);
    /* the stalled rank: 3 T asleep, then at most T in the barrier that replaces a hang */
    double limit = stall && t_rank == 0 ? 4 * T + 3 : 2 * T + 3;
    CHECK(dt <= limit, "kv_open took %.2f s with ftkv_timeout %.0f s", dt, T);
    if (t_rank != 0)
        CHECK(rc == KV_ETIMEDOUT, "kv_open with rank 0 %.0f s late: rc %d (%s), expected KV_ETIMEDOUT",
              3 * T, rc, t_strerror(rc));
    if (rc != KV_OK) CHECK(kv == NULL, "failed kv_open did not set *kv = NULL");
    int lo, hi;
    long changed = next_call_under_pattern(rc, &lo, &hi);
    CHECK(changed == 0, "%ld bytes of memory kv_open had used and given back changed during the application's "
          "next MPI call (a collective the timed-out kv_open gave up on wrote into memory it no longer owned)", changed);
    if (stall) CHECK(rc == KV_ETIMEDOUT, "kv_open with rank 0 stalled inside it: rc %d (%s), expected KV_ETIMEDOUT",
                     rc, t_strerror(rc));
    CHECK(lo == hi, "kv_open result not agreed across ranks (min %d, max %d)", lo, hi);
    if (rc == KV_OK && kv != NULL) kv_close(&kv);
    MPI_Barrier(MPI_COMM_WORLD);

    t_phase("open again");
    unsetenv("FTKV_TEST_FAULT"); /* read at every kv_open: this one is not stalled */
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
