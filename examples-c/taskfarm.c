/*
 * taskfarm.c - a manager/worker task farm whose task lists live in the store, and that finishes
 * every task exactly once while workers are killed.
 *
 *     mpirun --enable-recovery -n 4 bin/taskfarm                        # no failure
 *     TASKFARM_KILL=2:5,3:12 mpirun --enable-recovery -x TASKFARM_KILL -n 5 bin/taskfarm
 *       (rank 2 dies holding its 5th task, rank 3 holding its 12th)
 *
 * Rank 0 is the manager, the others are workers. Every task i has a state key "task/i" in the
 * store, so the store holds the three lists: waiting ("waiting"), in progress ("running W A": worker
 * W's claim number A) and done ("done W A"). Changes of state are compare-and-swaps (kv_cas),
 * which the store decides in one order across ranks and keeps through the death of any one copy:
 *   worker:  waiting -> running W A   (claim; only one worker wins a task)
 *            compute, kv_put "result/i"
 *            running W A -> done W A  (only the claimer can complete it)
 *   manager: running W A -> waiting   (for a W that kv_failed reports dead: the task goes back)
 * When every task is done the manager sets "farm/finished". Then the survivors compare notes over
 * kv_comm: the manager checks each task is done once (by a live worker that reports completing it
 * exactly there, or by a worker that died after completing it), no task was claimed by two live
 * workers unless the manager put it back, and each result is right byte for byte; it also counts
 * how many state keys had a killed rank as their primary.
 * A call that returns KV_EPROCFAILED (a rank died; see ftkv.h, "Failures") is retried; a swap left
 * open by it is settled by reading the state, whose value names its writer.
 * Environment: TASKFARM_TASKS (default 240), TASKFARM_WORK (iterations per task, default
 * 400000, about 1-2 ms), TASKFARM_KILL (rank:claims,... workers that SIGKILL themselves right after
 * that many claims). Prints PASS or FAIL on the manager; exit status 0 only on PASS.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ftkv.h"

#define MAX_TASKS 100000

static int rank, size;
static uint64_t epoch_seen;
static long view_changes;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void pause_ms(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static void die(kv_store *kv, const char *what, int rc) {
    fprintf(stderr, "taskfarm: rank %d: %s: %s (%s)\n", rank, what, kv_strerror(rc), kv_errmsg(kv));
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* After KV_EPROCFAILED: counts the view change (once per new epoch) so the call can be retried. */
static int retry_after(kv_store *kv, int rc) {
    if (rc != KV_EPROCFAILED) return 0;
    uint64_t e = 0;
    if (kv_stat(kv, KV_STAT_EPOCH, &e) == KV_EPROCFAILED) kv_stat(kv, KV_STAT_EPOCH, &e);
    if (e != epoch_seen) {
        epoch_seen = e;
        view_changes++;
    }
    return 1;
}

/* The task's result: deterministic work on the task number. */
static double compute(long task, long work) {
    double x = 1.0 + (double)task * 1e-3, acc = 0;
    for (long k = 0; k < work; k++) {
        x = x * 1.0000001 + 1e-9;
        acc += x / (1.0 + (double)(k & 1023));
    }
    return acc;
}

static int get_text(kv_store *kv, const char *key, char *out, size_t cap) {
    for (;;) {
        size_t len = 0;
        int rc = kv_get(kv, key, strlen(key), out, cap - 1, &len);
        if (retry_after(kv, rc)) continue;
        out[rc == KV_OK ? len : 0] = '\0';
        return rc;
    }
}

static void put_retrying(kv_store *kv, const char *key, const void *value, size_t len) {
    for (;;) {
        int rc = kv_put(kv, key, strlen(key), value, len);
        if (retry_after(kv, rc)) continue;
        if (rc != KV_OK) die(kv, "kv_put", rc);
        return;
    }
}

/* Swaps state key `key` from `from` to `to`; a swap left open by a failure is settled by reading
 * the state (it names its writer). Returns whether the state is now `to` by this swap. */
static int swap_state(kv_store *kv, const char *key, const char *from, const char *to) {
    for (;;) {
        int swapped = 0;
        int rc = kv_cas(kv, key, strlen(key), from, strlen(from), to, strlen(to), &swapped);
        if (rc == KV_OK) return swapped;
        if (rc != KV_EPROCFAILED && rc != KV_EREMOTE) die(kv, "kv_cas", rc);
        retry_after(kv, rc);
        char state[64];
        if (get_text(kv, key, state, sizeof state) == KV_OK) {
            if (strcmp(state, to) == 0) return 1;   /* it took effect */
            if (strcmp(state, from) != 0) return 0; /* someone else changed it */
        }
        /* Still `from`: it did not take effect; try again. */
    }
}

/* What a worker did: the tasks it claimed, and those it completed (marked done). */
struct record {
    long *claimed, nclaimed, *completed, ncompleted;
};

static void worker(kv_store *kv, long tasks, long work, long kill_after, struct record *rec) {
    long claims = 0;
    rec->claimed = malloc(sizeof(long) * (size_t)tasks * 2);
    rec->completed = malloc(sizeof(long) * (size_t)tasks);
    char key[64], state[64], running[64], done[64], flag[8];
    for (;;) {
        int idle = 1;
        for (long n = 0; n < tasks; n++) {
            long i = (n + (long)rank * tasks / size) % tasks; /* workers start at different places */
            snprintf(key, sizeof key, "task/%ld", i);
            if (get_text(kv, key, state, sizeof state) != KV_OK || strcmp(state, "waiting") != 0) continue;
            snprintf(running, sizeof running, "running %d %ld", rank, claims + 1);
            if (!swap_state(kv, key, "waiting", running)) continue;
            claims++;
            idle = 0;
            if (rec->nclaimed < 2 * tasks) rec->claimed[rec->nclaimed++] = i;
            if (claims == kill_after) {
                printf("taskfarm: worker %d is killed (SIGKILL) holding task %ld, its claim %ld\n", rank, i, claims);
                fflush(stdout);
                raise(SIGKILL);
            }
            double result = compute(i, work);
            snprintf(key, sizeof key, "result/%ld", i);
            put_retrying(kv, key, &result, sizeof result);
            snprintf(key, sizeof key, "task/%ld", i);
            snprintf(done, sizeof done, "done %d %ld", rank, claims);
            if (swap_state(kv, key, running, done)) rec->completed[rec->ncompleted++] = i;
        }
        if (idle) {
            if (get_text(kv, "farm/finished", flag, sizeof flag) == KV_OK) return;
            pause_ms(2); /* tasks of a dead worker may come back */
        }
    }
}

/* Returns the number of tasks put back on the waiting list, and marks them in `requeued`. */
static long manager(kv_store *kv, long tasks, char *requeued_task) {
    char key[64], state[64];
    long requeued = 0;
    int failed[256], nfailed = 0;
    for (;;) {
        int rc = kv_failed(kv, failed, 256, &nfailed);
        if (retry_after(kv, rc)) continue;
        if (rc != KV_OK) die(kv, "kv_failed", rc);
        long finished = 0;
        for (long i = 0; i < tasks; i++) {
            snprintf(key, sizeof key, "task/%ld", i);
            if (get_text(kv, key, state, sizeof state) != KV_OK) die(kv, "reading a task state", KV_ENOTFOUND);
            int w = -1;
            long a = 0;
            if (strcmp(state, "waiting") == 0) {
                continue;
            } else if (sscanf(state, "running %d %ld", &w, &a) == 2) {
                for (int f = 0; f < nfailed && f < 256; f++) {
                    if (failed[f] != w) continue;
                    if (swap_state(kv, key, state, "waiting")) {
                        requeued++;
                        requeued_task[i] = 1;
                        printf("taskfarm: manager puts task %ld back (worker %d died holding it)\n", i, w);
                        fflush(stdout);
                    }
                }
            } else if (strncmp(state, "done ", 5) == 0) {
                finished++;
            } else {
                die(kv, "a task state is malformed", KV_EINTERNAL);
            }
        }
        if (finished == tasks) break;
        pause_ms(5);
    }
    put_retrying(kv, "farm/finished", "yes", 3);
    return requeued;
}

/* Every rank's list, on rank 0 of comm. */
struct gathered {
    long *all;
    int *counts, *displs;
};

static struct gathered gather(MPI_Comm comm, long *list, long n) {
    int crank, csize, mine = (int)n, total = 0;
    MPI_Comm_rank(comm, &crank);
    MPI_Comm_size(comm, &csize);
    struct gathered g = {NULL, NULL, NULL};
    if (crank == 0) {
        g.counts = calloc((size_t)csize, sizeof(int));
        g.displs = calloc((size_t)csize, sizeof(int));
    }
    MPI_Gather(&mine, 1, MPI_INT, g.counts, 1, MPI_INT, 0, comm);
    if (crank == 0) {
        for (int r = 0; r < csize; r++) {
            g.displs[r] = total;
            total += g.counts[r];
        }
        g.all = malloc(sizeof(long) * (size_t)(total > 0 ? total : 1));
    }
    MPI_Gatherv(list, mine, MPI_LONG, g.all, g.counts, g.displs, MPI_LONG, 0, comm);
    return g;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const long tasks = env_long("TASKFARM_TASKS", 240), work = env_long("TASKFARM_WORK", 400000);
    long kill_after = 0;
    int killed[64] = {0}, nkilled = 0;
    for (const char *p = getenv("TASKFARM_KILL"); p && *p;) {
        char *end;
        long r = strtol(p, &end, 10), k = *end == ':' ? strtol(end + 1, &end, 10) : 0;
        if (end == p) break;
        if (r == rank) kill_after = k;
        if (r > 0 && r < 64) killed[nkilled++] = (int)r;
        p = *end == ',' ? end + 1 : end;
    }
    if (size < 2 || tasks < 1 || tasks > MAX_TASKS) {
        if (rank == 0) fprintf(stderr, "taskfarm: needs 2 or more ranks and 1..%d tasks\n", MAX_TASKS);
        MPI_Finalize();
        return 1;
    }

    /* Sequential consistency: a state written is visible to every rank at once. Heartbeats as in
     * the library's defaults unless the environment says otherwise. */
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "ftkv_consistency", "sequential");
    MPI_Info_set(info, "ftkv_replicas", "2");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "taskfarm", info, &kv);
    MPI_Info_free(&info);
    if (rc != KV_OK) die(NULL, "kv_open", rc);

    /* The manager fills the waiting list; which state keys have a rank to be killed as primary. */
    char key[64];
    long primaries_killed = 0;
    for (long i = 0; i < tasks; i++) {
        snprintf(key, sizeof key, "task/%ld", i);
        if (rank == 0) put_retrying(kv, key, "waiting", 7);
        int holders[8], n = 0;
        if (kv_locate(kv, key, strlen(key), holders, 8, &n) == KV_OK && n > 0)
            for (int k = 0; k < nkilled; k++) primaries_killed += holders[0] == killed[k];
    }
    if (rank == 0) {
        printf("taskfarm: %d workers, %ld tasks in the store, %d worker%s to be killed (primary of %ld task states)\n",
               size - 1, tasks, nkilled, nkilled == 1 ? "" : "s", primaries_killed);
        fflush(stdout);
    }
    MPI_Barrier(MPI_COMM_WORLD); /* the waiting list is complete before any worker looks */
    double t0 = now();

    long requeued = 0;
    struct record rec = {0};
    char *requeued_task = calloc((size_t)tasks, 1);
    if (rank == 0) requeued = manager(kv, tasks, requeued_task);
    else worker(kv, tasks, work, kill_after, &rec);
    double elapsed = now() - t0;

    /* The survivors compare notes on kv_comm: each worker's claimed and completed tasks. */
    MPI_Comm comm;
    for (;;) {
        rc = kv_comm(kv, &comm);
        if (!retry_after(kv, rc)) break;
    }
    if (rc != KV_OK) die(kv, "kv_comm", rc);
    int crank, csize;
    MPI_Comm_rank(comm, &crank);
    MPI_Comm_size(comm, &csize);
    int failures = 0, *ids = crank == 0 ? calloc((size_t)csize, sizeof(int)) : NULL;
    MPI_Gather(&rank, 1, MPI_INT, ids, 1, MPI_INT, 0, comm);
    struct gathered claimed = gather(comm, rec.claimed, rec.nclaimed), completed = gather(comm, rec.completed, rec.ncompleted);
    int total = 0;

    if (crank == 0) {
        /* by[i]: the live worker that reported completing task i (-1: none). */
        int *by = malloc(sizeof(int) * (size_t)tasks);
        for (long i = 0; i < tasks; i++) by[i] = -1;
        int *claims = calloc((size_t)tasks, sizeof(int));
        for (int r = 0; r < csize; r++) {
            for (int k = 0; k < claimed.counts[r]; k++) {
                long i = claimed.all[claimed.displs[r] + k];
                if (i >= 0 && i < tasks && ++claims[i] == 2 && !requeued_task[i]) {
                    printf("taskfarm: FAIL task %ld was claimed by two live workers, but never put back\n", i);
                    failures++;
                }
            }
            for (int k = 0; k < completed.counts[r]; k++) {
                long i = completed.all[completed.displs[r] + k];
                total++;
                if (i < 0 || i >= tasks || by[i] != -1) {
                    printf("taskfarm: FAIL task %ld reported completed twice (second time by worker %d)\n", i, ids[r]);
                    failures++;
                    continue;
                }
                by[i] = ids[r];
            }
        }
        long by_dead = 0;
        char state[64];
        for (long i = 0; i < tasks; i++) {
            snprintf(key, sizeof key, "task/%ld", i);
            int w = -1;
            long a = 0;
            if (get_text(kv, key, state, sizeof state) != KV_OK || sscanf(state, "done %d %ld", &w, &a) != 2) {
                printf("taskfarm: FAIL task %ld is '%s', not done\n", i, state);
                failures++;
                continue;
            }
            int dead = 1;
            for (int r = 0; r < csize; r++) dead &= ids[r] != w;
            if (dead) by_dead++;
            else if (by[i] != w) {
                printf("taskfarm: FAIL task %ld is marked done by worker %d, but %s reported completing it\n", i, w,
                       by[i] < 0 ? "no worker" : "another worker");
                failures++;
            }
            double result = 0, want = compute(i, work);
            size_t len = 0;
            snprintf(key, sizeof key, "result/%ld", i);
            for (;;) {
                rc = kv_get(kv, key, strlen(key), &result, sizeof result, &len);
                if (!retry_after(kv, rc)) break;
            }
            if (rc != KV_OK || len != sizeof result || memcmp(&result, &want, sizeof want) != 0) {
                printf("taskfarm: FAIL result of task %ld: rc %d, %zu bytes, %.17g instead of %.17g\n", i, rc, len, result, want);
                failures++;
            }
        }
        printf("taskfarm: %ld tasks done in %.2f s: %d by the %d live workers, %ld by workers that died after completing them;"
               " %ld put back after a worker died; %ld view change%s\n",
               tasks, elapsed, total, csize - 1, by_dead, requeued, view_changes, view_changes == 1 ? "" : "s");
        printf("%s taskfarm: every task done exactly once with the right result, %d of %d workers killed\n",
               failures ? "FAIL" : "PASS", size - csize, size - 1);
        free(by);
        free(claims);
    }
    MPI_Bcast(&failures, 1, MPI_INT, 0, comm);
    free(ids), free(requeued_task), free(rec.claimed), free(rec.completed);
    free(claimed.all), free(claimed.counts), free(claimed.displs);
    free(completed.all), free(completed.counts), free(completed.displs);
    /* kv_close retries its fence itself after a view change. */
    if ((rc = kv_close(&kv)) != KV_OK) {
        fprintf(stderr, "taskfarm: rank %d: kv_close: %s (%s)\n", rank, kv_strerror(rc), kv_errmsg(NULL));
        failures++;
    }
    MPI_Finalize();
    return failures ? 1 : 0;
}
