/*
 * demo.c - checkpoint/restart of an MPI simulation with libftkv.
 *
 * A 1-D heat-diffusion problem (explicit Jacobi steps, fixed zero boundaries) is split into one
 * slice per rank. Every K steps each rank checkpoints its slice into the store under "u/<rank>"
 * (kv_put, then the collective kv_fence makes every checkpoint durable on its replica ranks).
 * At step FAIL every rank "loses" its state: it frees its arrays, and rebuilds them from its last
 * checkpoint with kv_get; the simulation goes back to the checkpoint's step and carries on.
 *
 * At the end the field is compared with a reference computed on every rank without interruption.
 * The arithmetic is the same whatever the decomposition, so the two must be bitwise equal; a
 * checksum over all ranks is compared too. The last line is PASS or FAIL, and so is the exit code.
 *
 *     mpirun -n 4 ./demo [CELLS STEPS K FAIL]        (defaults: 20000 2000 250 1300)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include <ftkv.h>

#define ALPHA 0.25 /* diffusion number; explicit scheme stable for <= 0.5 */

static int rank, nranks;

/* Every kv_* result is checked; a failure is reported with both texts the library offers. */
static void kv_failed(const kv_store *kv, const char *call, int rc, int line) {
    fprintf(stderr, "[rank %d] demo.c:%d: %s -> %s (%d): %s\n", rank, line, call, kv_strerror(rc),
            rc, kv_errmsg(kv));
    fprintf(stderr, "FAIL: libftkv call failed on rank %d\n", rank);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
}
#define KV_CHECK(kv, call)                                   \
    do {                                                     \
        int rc_ = (call);                                    \
        if (rc_ != KV_OK) kv_failed((kv), #call, rc_, __LINE__); \
    } while (0)

/* Initial temperature of global cell i: a parabola plus a hot spot. No libm needed. */
static double initial(long i, long ncells) {
    double x = ((double)i + 0.5) / (double)ncells;
    double u = 4.0 * x * (1.0 - x);
    if (x > 0.25 && x < 0.35) u += 1.0;
    return u;
}

/* One Jacobi update of a cell from its neighbours: the only arithmetic of the simulation. */
static double stencil(double left, double centre, double right) {
    return centre + ALPHA * ((left - 2.0 * centre) + right);
}

/* Order-independent checksum of cells [0, n) that start at global index lo: a sum modulo 2^64
 * of the cells' bit patterns, each mixed with its index. */
static uint64_t checksum(const double *u, long lo, long n) {
    uint64_t sum = 0;
    for (long i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, &u[i], sizeof bits);
        uint64_t h = (bits ^ ((uint64_t)(lo + i) * 0x9E3779B97F4A7C15ull)) * 0xff51afd7ed558ccdull;
        sum += h ^ (h >> 33);
    }
    return sum;
}

/* This rank's slice: n cells from global index lo, stored at u[1..n] with ghosts u[0], u[n+1]. */
typedef struct {
    long lo, n;
    double *u, *unew;
} slice_t;

static void slice_alloc(slice_t *s) {
    s->u = malloc((size_t)(s->n + 2) * sizeof(double));
    s->unew = malloc((size_t)(s->n + 2) * sizeof(double));
    if (!s->u || !s->unew) {
        fprintf(stderr, "[rank %d] out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    /* Ghost cells beyond the domain's ends stay 0 (the boundary condition). */
    s->u[0] = s->u[s->n + 1] = s->unew[0] = s->unew[s->n + 1] = 0.0;
}

static void step(slice_t *s) {
    int left = rank > 0 ? rank - 1 : MPI_PROC_NULL;
    int right = rank < nranks - 1 ? rank + 1 : MPI_PROC_NULL;
    MPI_Sendrecv(&s->u[1], 1, MPI_DOUBLE, left, 0, &s->u[s->n + 1], 1, MPI_DOUBLE, right, 0,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&s->u[s->n], 1, MPI_DOUBLE, right, 1, &s->u[0], 1, MPI_DOUBLE, left, 1,
                 MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    for (long i = 1; i <= s->n; i++) s->unew[i] = stencil(s->u[i - 1], s->u[i], s->u[i + 1]);
    double *t = s->u;
    s->u = s->unew;
    s->unew = t;
}

static void checkpoint(kv_store *kv, const slice_t *s, long t) {
    char key[32];
    snprintf(key, sizeof key, "u/%d", rank);
    double t0 = MPI_Wtime();
    KV_CHECK(kv, kv_put(kv, key, strlen(key), &s->u[1], (size_t)s->n * sizeof(double)));
    if (rank == 0) {
        int64_t step_no = t;
        KV_CHECK(kv, kv_put(kv, "meta/step", 9, &step_no, sizeof step_no));
    }
    KV_CHECK(kv, kv_fence(kv)); /* collective: every rank's checkpoint is now on its replicas */
    double dt = MPI_Wtime() - t0;
    if (rank == 0)
        printf("step %5ld: checkpoint of %d slices (%ld bytes on rank 0) in %.2f ms\n", t, nranks,
               (long)(s->n * (long)sizeof(double)), dt * 1e3);
}

/* Rebuild the slice from the store alone; returns the step of the checkpoint. *remote is set
 * when this rank holds no replica of its own checkpoint, so that it came from other ranks. */
static long restore(kv_store *kv, slice_t *s, int *remote) {
    char key[32];
    size_t len = 0;
    int holders[64], nh = 0;
    snprintf(key, sizeof key, "u/%d", rank);
    KV_CHECK(kv, kv_locate(kv, key, strlen(key), holders, 64, &nh));
    *remote = 1;
    for (int i = 0; i < nh && i < 64; i++)
        if (holders[i] == rank) *remote = 0;
    slice_alloc(s);
    int rc = kv_get(kv, key, strlen(key), &s->u[1], (size_t)s->n * sizeof(double), &len);
    if (rc != KV_OK) kv_failed(kv, "kv_get(u/<rank>)", rc, __LINE__);
    if (len != (size_t)s->n * sizeof(double)) {
        fprintf(stderr, "[rank %d] FAIL: checkpoint %s has %zu bytes, expected %zu\n", rank, key,
                len, (size_t)s->n * sizeof(double));
        MPI_Abort(MPI_COMM_WORLD, 4);
    }
    int64_t step_no = -1;
    rc = kv_get(kv, "meta/step", 9, &step_no, sizeof step_no, &len);
    if (rc != KV_OK) kv_failed(kv, "kv_get(meta/step)", rc, __LINE__);
    if (len != sizeof step_no) {
        fprintf(stderr, "[rank %d] FAIL: meta/step has %zu bytes\n", rank, len);
        MPI_Abort(MPI_COMM_WORLD, 4);
    }
    return (long)step_no;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    long ncells = argc > 1 ? atol(argv[1]) : 20000;
    long nsteps = argc > 2 ? atol(argv[2]) : 2000;
    long every = argc > 3 ? atol(argv[3]) : 250;
    long fail_at = argc > 4 ? atol(argv[4]) : 1300;
    if (ncells < nranks || nsteps < 1 || every < 1 || fail_at <= every || fail_at > nsteps) {
        if (rank == 0)
            fprintf(stderr, "usage: demo [CELLS>=ranks STEPS K FAIL] with K < FAIL <= STEPS\n");
        MPI_Finalize();
        return 2;
    }

    kv_store *kv = NULL;
    KV_CHECK(kv, kv_open(MPI_COMM_WORLD, "heat-demo", MPI_INFO_NULL, &kv));
    if (rank == 0) {
        uint64_t replicas = 0, thread = 0;
        KV_CHECK(kv, kv_stat(kv, KV_STAT_REPLICAS, &replicas));
        KV_CHECK(kv, kv_stat(kv, KV_STAT_PROGRESS_THREAD, &thread));
        printf("demo: 1-D heat diffusion, %ld cells on %d ranks, %ld steps, checkpoint every %ld\n",
               ncells, nranks, nsteps, every);
        printf("demo: libftkv %s, %llu replica(s) per key, progress thread: %s\n",
               kv_version(NULL, NULL, NULL), (unsigned long long)replicas, thread ? "yes" : "no");
    }

    slice_t s;
    s.lo = (long)((long long)rank * ncells / nranks);
    s.n = (long)((long long)(rank + 1) * ncells / nranks) - s.lo;
    slice_alloc(&s);
    for (long i = 0; i < s.n; i++) s.u[i + 1] = initial(s.lo + i, ncells);

    int failed_once = 0;
    double t0 = MPI_Wtime();
    for (long t = 0; t < nsteps;) {
        step(&s);
        t++;
        if (t % every == 0) checkpoint(kv, &s, t);
        if (t == fail_at && !failed_once) {
            failed_once = 1;
            /* Lose everything this rank knew about the field. */
            free(s.u);
            free(s.unew);
            s.u = s.unew = NULL;
            if (rank == 0) printf("step %5ld: simulated failure: every rank drops its state\n", t);
            int remote = 0, nremote = 0;
            long back = restore(kv, &s, &remote);
            MPI_Reduce(&remote, &nremote, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
            if (back <= 0 || back > t || back % every != 0) {
                fprintf(stderr, "[rank %d] FAIL: restored step %ld makes no sense at step %ld\n",
                        rank, back, t);
                MPI_Abort(MPI_COMM_WORLD, 4);
            }
            if (rank == 0) {
                int holders[16], nh = 0;
                KV_CHECK(kv, kv_locate(kv, "u/0", 3, holders, 16, &nh));
                printf("step %5ld: restored from the checkpoint of step %ld (u/0 is held by rank%s",
                       t, back, nh > 1 ? "s" : "");
                for (int i = 0; i < nh && i < 16; i++) printf("%s %d", i ? "," : "", holders[i]);
                printf("); redoing %ld steps\n", t - back);
                printf("step %5ld: %d of %d ranks read their checkpoint back from other ranks\n", t,
                       nremote, nranks);
            }
            t = back;
        }
    }
    double elapsed = MPI_Wtime() - t0;

    /* Every rank computes the uninterrupted reference for the whole domain. */
    double *ref = malloc((size_t)(ncells + 2) * sizeof(double));
    double *tmp = malloc((size_t)(ncells + 2) * sizeof(double));
    if (!ref || !tmp) {
        fprintf(stderr, "[rank %d] out of memory\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 3);
    }
    ref[0] = ref[ncells + 1] = tmp[0] = tmp[ncells + 1] = 0.0;
    for (long i = 0; i < ncells; i++) ref[i + 1] = initial(i, ncells);
    for (long t = 0; t < nsteps; t++) {
        for (long i = 1; i <= ncells; i++) tmp[i] = stencil(ref[i - 1], ref[i], ref[i + 1]);
        double *x = ref;
        ref = tmp;
        tmp = x;
    }

    long mismatches = 0;
    for (long i = 0; i < s.n; i++)
        if (memcmp(&s.u[i + 1], &ref[s.lo + i + 1], sizeof(double)) != 0) mismatches++;
    long total_mismatches = 0;
    MPI_Allreduce(&mismatches, &total_mismatches, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    uint64_t mine = checksum(&s.u[1], s.lo, s.n), sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    uint64_t ref_sum = checksum(&ref[1], 0, ncells);
    int all_failed_once = 0;
    MPI_Allreduce(&failed_once, &all_failed_once, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);

    KV_CHECK(NULL, kv_close(&kv));

    int ok = total_mismatches == 0 && sum == ref_sum && all_failed_once;
    if (rank == 0) {
        printf("demo: %ld steps (plus the redone ones) in %.3f s\n", nsteps, elapsed);
        printf("demo: cells differing from the uninterrupted run: %ld of %ld\n", total_mismatches,
               ncells);
        printf("demo: checksum over all ranks 0x%016llx, reference 0x%016llx\n",
               (unsigned long long)sum, (unsigned long long)ref_sum);
        if (ok)
            printf("PASS: the restarted run matches the uninterrupted one bitwise\n");
        else
            printf("FAIL: the restarted run does not match the uninterrupted one\n");
        fflush(stdout);
    }
    free(ref);
    free(tmp);
    free(s.u);
    free(s.unew);
    MPI_Finalize();
    return ok ? 0 : 1;
}
