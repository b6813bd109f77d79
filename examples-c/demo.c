/*
 * demo.c - checkpoint/restart of an MPI simulation with libftkv, across a killed job and a
 * different number of ranks.
 *
 * A 1-D heat-diffusion problem (explicit Jacobi steps, fixed zero boundaries) is cut into
 * BLOCKS fixed blocks of cells, spread over the ranks. Every K steps each rank puts its blocks
 * into the store under "u/<block>" and the job calls kv_commit: a durable, versioned checkpoint
 * on every rank's disk (ftkv_dir, replicated r times).
 *
 * Started again after a crash, kv_open loads the newest committed version, on any number of
 * ranks: each rank reads the blocks it now owns (most of them written by other ranks of the old
 * job) and the simulation carries on from the checkpoint's step. DEMO_KILL_STEP and
 * DEMO_KILL_RANK make a rank SIGKILL itself after that step, as a node failure would
 * (scripts/demo.sh kills the job twice and resumes it on fewer, then more ranks).
 *
 * With DEMO_ONLINE=1 (under `mpirun --enable-recovery`) the job does not die with its rank: every K
 * steps the ranks put their blocks under "u/<step>/<block>" and kv_fence (an in-memory, replicated
 * checkpoint); the halo exchange waits with a deadline-free poll that also watches kv_failed. When
 * a rank dies, the survivors see it there (or get KV_EPROCFAILED from the store), fence again until
 * the store has moved to a view without the dead rank, take the survivors' communicator from
 * kv_comm, cut the domain among themselves, reload the newest checkpoint every block of which is in
 * the store, and carry on from its step.
 *
 * At the end the field is compared with a reference computed on every rank without interruption.
 * The arithmetic is the same whatever the decomposition, so the two must be bitwise equal; a
 * checksum over all ranks is compared too. The last line is PASS or FAIL, and so is the exit code.
 *
 *     mpirun -n 4 ./demo [CELLS STEPS K]        (defaults: 20000 2000 250; at most 64 ranks)
 */
#define _POSIX_C_SOURCE 200809L /* kill() under -std=c99 */
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <mpi.h>
#include <ftkv.h>

#define ALPHA 0.25 /* diffusion number; explicit scheme stable for <= 0.5 */
#define BLOCKS 64  /* checkpoint granularity: independent of the number of ranks */

static int rank, nranks;
/* The communicator the simulation runs on: MPI_COMM_WORLD, or after a failure (DEMO_ONLINE) the
 * survivors' communicator from kv_comm. */
static MPI_Comm comm;
static int online, world_rank;

/* Every kv_* result is checked; a failure is reported with both texts the library offers. */
static void report_failure(const kv_store *kv, const char *call, int rc, int line) {
    fprintf(stderr, "[rank %d] demo.c:%d: %s -> %s (%d): %s\n", rank, line, call, kv_strerror(rc),
            rc, kv_errmsg(kv));
    fprintf(stderr, "FAIL: libftkv call failed on rank %d\n", rank);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 2);
}
#define KV_CHECK(kv, call)                                   \
    do {                                                     \
        int rc_ = (call);                                    \
        if (rc_ != KV_OK) report_failure((kv), #call, rc_, __LINE__); \
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

static long ncells;
static long block_start(int b) { return (long)((long long)b * ncells / BLOCKS); }

/* This rank's slice: blocks [b0, b1), n cells from global index lo, stored at u[1..n] with
 * ghosts u[0], u[n+1]. */
typedef struct {
    int b0, b1;
    long lo, n;
    double *u, *unew;
} slice_t;

static void slice_init(slice_t *s) {
    s->b0 = (int)((long)rank * BLOCKS / nranks);
    s->b1 = (int)((long)(rank + 1) * BLOCKS / nranks);
    s->lo = block_start(s->b0);
    s->n = block_start(s->b1) - s->lo;
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
                 comm, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&s->u[s->n], 1, MPI_DOUBLE, right, 1, &s->u[0], 1, MPI_DOUBLE, left, 1,
                 comm, MPI_STATUS_IGNORE);
    for (long i = 1; i <= s->n; i++) s->unew[i] = stencil(s->u[i - 1], s->u[i], s->u[i + 1]);
    double *t = s->u;
    s->u = s->unew;
    s->unew = t;
}

/* ---- DEMO_ONLINE: surviving a dead rank without a restart ---- */

static int known_failed;      /* failed ranks already recovered from */
static double halo_wait_start; /* when the halo exchange that noticed a failure began */

/* Whether a rank has failed since the last recovery (the store says so: kv_failed lists it, or a
 * call reports that the store already moved to a view without it). */
static int failure_seen(kv_store *kv) {
    int failed[64], n = 0;
    int rc = kv_failed(kv, failed, 64, &n);
    if (rc == KV_EPROCFAILED) return 1;
    if (rc != KV_OK) report_failure(kv, "kv_failed", rc, __LINE__);
    return n > known_failed;
}

/* One step whose halo exchange polls instead of blocking, so that a dead neighbour is noticed
 * rather than waited for forever. Returns 1 (the step did not happen) when a rank has failed. */
static int step_online(kv_store *kv, slice_t *s) {
    int left = rank > 0 ? rank - 1 : MPI_PROC_NULL;
    int right = rank < nranks - 1 ? rank + 1 : MPI_PROC_NULL;
    MPI_Request req[4];
    halo_wait_start = MPI_Wtime();
    MPI_Irecv(&s->u[s->n + 1], 1, MPI_DOUBLE, right, 0, comm, &req[0]);
    MPI_Irecv(&s->u[0], 1, MPI_DOUBLE, left, 1, comm, &req[1]);
    MPI_Isend(&s->u[1], 1, MPI_DOUBLE, left, 0, comm, &req[2]);
    MPI_Isend(&s->u[s->n], 1, MPI_DOUBLE, right, 1, comm, &req[3]);
    for (long polls = 0;; polls++) {
        int done = 0;
        MPI_Testall(4, req, &done, MPI_STATUSES_IGNORE);
        if (done) break;
        if (polls > 1000) sched_yield(); /* a neighbour is late: let it (and the store) run */
        if (polls % 256 == 255 && failure_seen(kv)) {
            /* Abandoned: the communicator is replaced, nothing will ever match these. */
            for (int i = 0; i < 4; i++)
                if (req[i] != MPI_REQUEST_NULL) { MPI_Cancel(&req[i]); MPI_Request_free(&req[i]); }
            return 1;
        }
    }
    for (long i = 1; i <= s->n; i++) s->unew[i] = stencil(s->u[i - 1], s->u[i], s->u[i + 1]);
    double *t = s->u;
    s->u = s->unew;
    s->unew = t;
    return 0;
}

/* An in-memory checkpoint: this rank's blocks of step t, fenced (replicated on other ranks);
 * the one of two checkpoints ago is deleted. Returns 1 if a rank failed meanwhile. */
static int checkpoint_online(kv_store *kv, const slice_t *s, long t, long every) {
    char key[48];
    double t0 = MPI_Wtime();
    for (int b = s->b0; b < s->b1; b++) {
        snprintf(key, sizeof key, "u/%ld/%d", t, b);
        long off = block_start(b) - s->lo;
        int rc = kv_put(kv, key, strlen(key), &s->u[1 + off], (size_t)(block_start(b + 1) - block_start(b)) * sizeof(double));
        if (rc == KV_EPROCFAILED) return 1;
        if (rc != KV_OK) report_failure(kv, "kv_put(u/<step>/<block>)", rc, __LINE__);
        if (t >= 2 * every) {
            snprintf(key, sizeof key, "u/%ld/%d", t - 2 * every, b);
            rc = kv_del(kv, key, strlen(key));
            if (rc == KV_EPROCFAILED) return 1;
            if (rc != KV_OK) report_failure(kv, "kv_del", rc, __LINE__);
        }
    }
    int rc = kv_fence(kv);
    if (rc == KV_EPROCFAILED) return 1;
    if (rc != KV_OK) report_failure(kv, "kv_fence", rc, __LINE__);
    if (rank == 0)
        printf("step %5ld: in-memory checkpoint (kv_put + kv_fence, %d blocks, replicated) in %.1f ms\n", t, BLOCKS,
               (MPI_Wtime() - t0) * 1e3);
    return 0;
}

/* After a failure: wait until the store has moved to a view without the dead (a fence that
 * completes), continue on the survivors' communicator, cut the domain among them and reload the
 * newest checkpoint every block of which survived. Returns its step. */
static long recover(kv_store *kv, slice_t *s, long t_now, long every) {
    double t0 = MPI_Wtime(), waited = t0 - halo_wait_start;
    int rc, tries = 0;
    while ((rc = kv_fence(kv)) == KV_EPROCFAILED && tries++ < 8) {}
    if (rc != KV_OK) report_failure(kv, "kv_fence (recovery)", rc, __LINE__);
    int failed[64], nfailed = 0;
    KV_CHECK(kv, kv_failed(kv, failed, 64, &nfailed));
    known_failed = nfailed;
    KV_CHECK(kv, kv_comm(kv, &comm));
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &nranks);
    free(s->u);
    free(s->unew);
    slice_init(s);
    /* The newest checkpoint step any survivor reached, then older ones. */
    long newest = t_now / every * every, t = 0;
    MPI_Allreduce(MPI_IN_PLACE, &newest, 1, MPI_LONG, MPI_MAX, comm);
    for (long cand = newest; cand > 0; cand -= every) {
        int have = 1;
        for (int b = s->b0; b < s->b1 && have; b++) {
            char key[48];
            size_t len = 0;
            snprintf(key, sizeof key, "u/%ld/%d", cand, b);
            have = kv_get(kv, key, strlen(key), NULL, 0, &len) == KV_OK;
        }
        MPI_Allreduce(MPI_IN_PLACE, &have, 1, MPI_INT, MPI_MIN, comm);
        if (have) { t = cand; break; }
    }
    if (t == 0) {
        for (long i = 0; i < s->n; i++) s->u[i + 1] = initial(s->lo + i, ncells);
    } else {
        for (int b = s->b0; b < s->b1; b++) {
            char key[48];
            size_t len = 0, want = (size_t)(block_start(b + 1) - block_start(b)) * sizeof(double);
            snprintf(key, sizeof key, "u/%ld/%d", t, b);
            KV_CHECK(kv, kv_get(kv, key, strlen(key), &s->u[1 + block_start(b) - s->lo], want, &len));
        }
    }
    if (rank == 0) {
        printf("step %5ld: rank", t_now);
        for (int i = 0; i < nfailed; i++) printf(" %d", failed[i]);
        printf(" failed: noticed through the store after %.2f s of waiting for a halo; recovered online in "
               "%.3f s: the store shrank to %d ranks and re-replicated, the domain is cut among them, and the "
               "field is reloaded from the checkpoint of step %ld\n", waited, MPI_Wtime() - t0, nranks, t);
        fflush(stdout);
    }
    return t;
}

/* Puts this rank's blocks and the step, then commits: a durable version on every rank's disk. */
static void checkpoint(kv_store *kv, const slice_t *s, long t) {
    char key[32];
    double t0 = MPI_Wtime();
    for (int b = s->b0; b < s->b1; b++) {
        snprintf(key, sizeof key, "u/%d", b);
        long off = block_start(b) - s->lo;
        KV_CHECK(kv, kv_put(kv, key, strlen(key), &s->u[1 + off], (size_t)(block_start(b + 1) - block_start(b)) * sizeof(double)));
    }
    if (rank == 0) {
        int64_t meta[3] = {t, ncells, nranks};
        KV_CHECK(kv, kv_put(kv, "meta", 4, meta, sizeof meta));
    }
    uint64_t version = 0;
    KV_CHECK(kv, kv_commit(kv, &version)); /* collective: durable once it returns */
    double dt = MPI_Wtime() - t0;
    if (rank == 0)
        printf("step %5ld: committed version %llu (%ld cells in %d blocks) in %.1f ms\n", t,
               (unsigned long long)version, ncells, BLOCKS, dt * 1e3);
}

/* Rebuilds the slice from the loaded version; returns its step. *remote counts the blocks this
 * rank read from other ranks (it holds no copy of them). */
static long restore(kv_store *kv, slice_t *s, int *remote, long *old_ranks) {
    int64_t meta[3] = {0, 0, 0};
    size_t len = 0;
    int rc = kv_get(kv, "meta", 4, meta, sizeof meta, &len);
    if (rc != KV_OK || len != sizeof meta) report_failure(kv, "kv_get(meta)", rc == KV_OK ? KV_EINTERNAL : rc, __LINE__);
    if (meta[1] != ncells) {
        if (rank == 0) fprintf(stderr, "FAIL: the stored field has %lld cells, this run %ld\n", (long long)meta[1], ncells);
        MPI_Abort(MPI_COMM_WORLD, 4);
    }
    *old_ranks = (long)meta[2];
    *remote = 0;
    for (int b = s->b0; b < s->b1; b++) {
        char key[32];
        int holders[64], nh = 0, local = 0;
        snprintf(key, sizeof key, "u/%d", b);
        KV_CHECK(kv, kv_locate(kv, key, strlen(key), holders, 64, &nh));
        for (int i = 0; i < nh && i < 64; i++) local |= holders[i] == rank;
        *remote += !local;
        size_t want = (size_t)(block_start(b + 1) - block_start(b)) * sizeof(double);
        rc = kv_get(kv, key, strlen(key), &s->u[1 + block_start(b) - s->lo], want, &len);
        if (rc != KV_OK) report_failure(kv, "kv_get(u/<block>)", rc, __LINE__);
        if (len != want) {
            fprintf(stderr, "[rank %d] FAIL: block %s has %zu bytes, expected %zu\n", rank, key, len, want);
            MPI_Abort(MPI_COMM_WORLD, 4);
        }
    }
    return (long)meta[0];
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    comm = MPI_COMM_WORLD;
    world_rank = rank;
    online = getenv("DEMO_ONLINE") && atoi(getenv("DEMO_ONLINE")) != 0;

    ncells = argc > 1 ? atol(argv[1]) : 20000;
    long nsteps = argc > 2 ? atol(argv[2]) : 2000;
    long every = argc > 3 ? atol(argv[3]) : 250;
    long kill_step = getenv("DEMO_KILL_STEP") ? atol(getenv("DEMO_KILL_STEP")) : -1;
    long kill_rank = getenv("DEMO_KILL_RANK") ? atol(getenv("DEMO_KILL_RANK")) : 0;
    if (ncells < BLOCKS || nsteps < 1 || every < 1 || nranks > BLOCKS) {
        if (rank == 0) fprintf(stderr, "usage: demo [CELLS>=%d STEPS K] on at most %d ranks\n", BLOCKS, BLOCKS);
        MPI_Finalize();
        return 2;
    }

    kv_store *kv = NULL;
    KV_CHECK(NULL, kv_open(MPI_COMM_WORLD, "heat-demo", MPI_INFO_NULL, &kv));
    uint64_t version = 0;
    KV_CHECK(kv, kv_stat(kv, KV_STAT_VERSION, &version));
    if (rank == 0) {
        uint64_t replicas = 0, thread = 0;
        KV_CHECK(kv, kv_stat(kv, KV_STAT_REPLICAS, &replicas));
        KV_CHECK(kv, kv_stat(kv, KV_STAT_PROGRESS_THREAD, &thread));
        printf("demo: 1-D heat diffusion, %ld cells on %d ranks, %ld steps, commit every %ld\n",
               ncells, nranks, nsteps, every);
        printf("demo: libftkv %s, %llu replica(s) per key, progress thread: %s%s\n",
               kv_version(NULL, NULL, NULL), (unsigned long long)replicas, thread ? "yes" : "no",
               online ? "; online recovery: in-memory checkpoints (kv_fence), no restart" : "");
    }

    slice_t s;
    slice_init(&s);
    long t = 0;
    if (version > 0 && !online) {
        int remote = 0, nremote = 0;
        long old_ranks = 0;
        t = restore(kv, &s, &remote, &old_ranks);
        MPI_Reduce(&remote, &nremote, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rank == 0)
            printf("step %5ld: restarted from committed version %llu, written by %ld ranks, now on %d; "
                   "%d of %d blocks came from other ranks\n",
                   t, (unsigned long long)version, old_ranks, nranks, nremote, BLOCKS);
    } else {
        for (long i = 0; i < s.n; i++) s.u[i + 1] = initial(s.lo + i, ncells);
        if (rank == 0) printf("step     0: no committed version: starting from the initial field\n");
    }

    double t0 = MPI_Wtime();
    while (t < nsteps) {
        if (online) {
            if (step_online(kv, &s)) {
                t = recover(kv, &s, t, every);
                continue;
            }
            t++;
            if (t % every == 0 && t < nsteps && checkpoint_online(kv, &s, t, every)) t = recover(kv, &s, t, every);
        } else {
            step(&s);
            t++;
            if (t % every == 0 && t < nsteps) checkpoint(kv, &s, t);
        }
        if (t == kill_step && world_rank == kill_rank) {
            printf("step %5ld: rank %d is killed (SIGKILL), as if its node failed\n", t, rank);
            fflush(stdout);
            kill(getpid(), SIGKILL);
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
    for (long k = 0; k < nsteps; k++) {
        for (long i = 1; i <= ncells; i++) tmp[i] = stencil(ref[i - 1], ref[i], ref[i + 1]);
        double *x = ref;
        ref = tmp;
        tmp = x;
    }

    long mismatches = 0;
    for (long i = 0; i < s.n; i++)
        if (memcmp(&s.u[i + 1], &ref[s.lo + i + 1], sizeof(double)) != 0) mismatches++;
    long total_mismatches = 0;
    MPI_Allreduce(&mismatches, &total_mismatches, 1, MPI_LONG, MPI_SUM, comm);
    uint64_t mine = checksum(&s.u[1], s.lo, s.n), sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_UINT64_T, MPI_SUM, comm);
    uint64_t ref_sum = checksum(&ref[1], 0, ncells);

    KV_CHECK(NULL, kv_close(&kv));

    int ok = total_mismatches == 0 && sum == ref_sum;
    if (rank == 0) {
        printf("demo: ran to step %ld (%.3f s in this job)\n", nsteps, elapsed);
        printf("demo: cells differing from the uninterrupted run: %ld of %ld\n", total_mismatches,
               ncells);
        printf("demo: checksum over all ranks 0x%016llx, reference 0x%016llx\n",
               (unsigned long long)sum, (unsigned long long)ref_sum);
        if (ok)
            printf("PASS: the final field matches an uninterrupted run bitwise\n");
        else
            printf("FAIL: the final field does not match an uninterrupted run\n");
        fflush(stdout);
    }
    free(ref);
    free(tmp);
    free(s.u);
    free(s.unew);
    MPI_Finalize();
    return ok ? 0 : 1;
}
