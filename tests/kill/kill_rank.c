/*
 * kill_rank.c - a rank is SIGKILLed; the survivors must neither hang nor lose what they can reach.
 *
 * Run on 3 ranks under `mpirun --enable-recovery` (tests/run-all.sh does), r = 1, ftkv_timeout T:
 *  - every rank puts 64 keys with deterministic values, kv_fence, application barrier;
 *  - rank 2 kills itself with SIGKILL (a real fail-stop, no cleanup);
 *  - each survivor reads a key held by the other survivor: KV_OK, byte for byte (the survivors keep
 *    serving each other), and a key held only by the dead rank: KV_ETIMEDOUT after about T seconds,
 *    not a hang (online failover to replicas is the next milestone);
 *  - each survivor's kv_close (collective, one member dead) returns within a bounded time and sets
 *    the handle to NULL.
 * Each survivor prints "kill_rank: rank N PASS" or FAIL lines; MPI_COMM_WORLD has a dead member, so
 * there is no collective verdict: the driver script checks both survivors' lines.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ftkv.h"

#define KEYS 64
#define VICTIM 2
#define TIMEOUT_S 3.0

static int rank, failures;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fail(const char *what, int rc, const kv_store *kv) {
    printf("kill_rank: rank %d FAIL %s: rc %d (%s) %s\n", rank, what, rc, kv_strerror(rc), kv_errmsg(kv));
    failures++;
}

/* Value of key i of writer w: length and bytes depend only on (w, i). */
static size_t fill(unsigned char *buf, int w, int i) {
    size_t len = 100 + (size_t)(w * 37 + i * 11) % 900;
    unsigned x = (unsigned)(w * 7919 + i * 104729 + 1);
    for (size_t j = 0; j < len; j++) { x = x * 1103515245u + 12345u; buf[j] = (unsigned char)(x >> 16); }
    return len;
}

/* The first key of writer w whose only replica is `owner`. */
static int key_held_by(kv_store *kv, int w, int owner, char *key) {
    for (int i = 0; i < KEYS; i++) {
        int ranks[4], n = 0;
        snprintf(key, 64, "k/%d/%d", w, i);
        if (kv_locate(kv, key, strlen(key), ranks, 4, &n) == KV_OK && n == 1 && ranks[0] == owner) return i;
    }
    return -1;
}

int main(int argc, char **argv) {
    int provided, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 3) {
        if (rank == 0) printf("kill_rank: needs exactly 3 ranks\n");
        MPI_Finalize();
        return 1;
    }
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "ftkv_replicas", "1");
    MPI_Info_set(info, "ftkv_timeout", "3");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "kill", info, &kv);
    MPI_Info_free(&info);
    if (rc != KV_OK) { fail("kv_open", rc, NULL); MPI_Finalize(); return 1; }

    unsigned char val[1024], buf[1024];
    char key[64];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "k/%d/%d", rank, i);
        size_t len = fill(val, rank, i);
        if ((rc = kv_put(kv, key, strlen(key), val, len)) != KV_OK) fail("kv_put", rc, kv);
    }
    if ((rc = kv_fence(kv)) != KV_OK) fail("kv_fence", rc, kv);
    MPI_Barrier(MPI_COMM_WORLD);

    if (rank == VICTIM) {
        printf("kill_rank: rank %d killing itself with SIGKILL\n", rank);
        fflush(stdout);
        raise(SIGKILL);
    }
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL); /* let the victim die first */

    /* A key held by the other survivor, written by the victim: still readable, exact bytes. */
    int other = 1 - rank;
    int i = key_held_by(kv, VICTIM, other, key);
    if (i < 0) {
        fail("no key of the victim's is held by the other survivor", 0, kv);
    } else {
        size_t got = 0, want = fill(val, VICTIM, i);
        rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &got);
        if (rc != KV_OK) fail("kv_get of a key held by a survivor", rc, kv);
        else if (got != want || memcmp(buf, val, want) != 0) fail("kv_get returned different bytes", rc, kv);
    }

    /* A key held only by the dead rank: a deadline, not a hang. */
    i = key_held_by(kv, rank, VICTIM, key);
    if (i < 0) {
        fail("no key of mine is held by the victim", 0, kv);
    } else {
        size_t got = 0;
        double t0 = now();
        rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &got);
        double dt = now() - t0;
        if (rc != KV_ETIMEDOUT) fail("kv_get of a key held only by the dead rank", rc, kv);
        else if (dt < 0.8 * TIMEOUT_S || dt > TIMEOUT_S + 3) {
            printf("kill_rank: rank %d FAIL KV_ETIMEDOUT after %.2f s (ftkv_timeout %.0f s)\n", rank, dt, TIMEOUT_S);
            failures++;
        }
    }

    double t0 = now();
    rc = kv_close(&kv);
    double dt = now() - t0;
    if (kv != NULL) fail("kv_close left the handle set", rc, NULL);
    if (dt > 2 * TIMEOUT_S + 5) {
        printf("kill_rank: rank %d FAIL kv_close took %.2f s\n", rank, dt);
        failures++;
    }
    printf("kill_rank: rank %d kv_close with a dead member: rc %d (%s) after %.2f s\n", rank, rc, kv_strerror(rc), dt);
    if (failures == 0) printf("kill_rank: rank %d PASS\n", rank);
    fflush(stdout);
    MPI_Finalize();
    return failures != 0;
}
