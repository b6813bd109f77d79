/*
 * kill_rank.c - a rank is SIGKILLed; the survivors must neither hang nor lose what they can reach.
 *
 * Run under `mpirun --enable-recovery` (tests/run-all.sh runs several configurations) with
 * KILL_REPLICAS copies per key (ftkv_replicas) and KILL_VICTIM the rank that dies, ftkv_timeout T:
 *  - every rank puts 64 keys with deterministic values, kv_fence, application barrier;
 *  - the victim kills itself with SIGKILL (a real fail-stop, no cleanup);
 *  - every survivor's heartbeat watch (ftkv_heartbeat 0.1 s, ftkv_suspect_after 0.5 s) must report
 *    the victim in kv_failed within the suspicion time plus a margin;
 *  - each survivor reads keys of every writer, the victim included, starting before the victim is
 *    known to be dead. A key with any live holder must come back byte for byte: a get sent to the
 *    dead primary fails over to the next live replica as soon as the death is known, never waiting
 *    for ftkv_timeout. A key held only by the victim (1 copy) is KV_EPROCFAILED, promptly;
 *  - a put and a fence after the death: the put is local (KV_OK); the fence cannot complete with a
 *    dead member and returns KV_ETIMEDOUT after about T (today; online fault tolerance will make it
 *    KV_EPROCFAILED and then succeed); afterwards the handle reports that failure;
 *  - kv_close (collective, one member dead) returns the same code within a bounded time and sets
 *    the handle to NULL.
 * Each survivor prints "kill_rank: rank N PASS" or FAIL lines; MPI_COMM_WORLD has a dead member, so
 * there is no collective verdict: the driver script checks every survivor's line.
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
#define TIMEOUT_S 3.0

static int rank, size, failures;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fail(const char *what, const char *key, int rc, const kv_store *kv) {
    printf("kill_rank: rank %d FAIL %s (key '%s'): rc %d (%s) %s\n", rank, what, key, rc, kv_strerror(rc), kv_errmsg(kv));
    failures++;
}

/* Value of key i of writer w: length and bytes depend only on (w, i). */
static size_t fill(unsigned char *buf, int w, int i) {
    size_t len = 100 + (size_t)(w * 37 + i * 11) % 900;
    unsigned x = (unsigned)(w * 7919 + i * 104729 + 1);
    for (size_t j = 0; j < len; j++) { x = x * 1103515245u + 12345u; buf[j] = (unsigned char)(x >> 16); }
    return len;
}

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* A deadline, not a hang: rc must be KV_ETIMEDOUT after about T seconds. */
static void expect_timeout(const char *what, const char *key, int rc, double dt, const kv_store *kv) {
    if (rc != KV_ETIMEDOUT) fail(what, key, rc, kv);
    else if (dt < 0.8 * TIMEOUT_S || dt > TIMEOUT_S + 3) {
        printf("kill_rank: rank %d FAIL %s: KV_ETIMEDOUT after %.2f s (ftkv_timeout %.0f s)\n", rank, what, dt, TIMEOUT_S);
        failures++;
    }
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int replicas = (int)env_long("KILL_REPLICAS", 1), victim = (int)env_long("KILL_VICTIM", size - 1);
    if (size < 3 || victim < 0 || victim >= size) {
        if (rank == 0) printf("kill_rank: needs 3 or more ranks and a victim among them\n");
        MPI_Finalize();
        return 1;
    }
    char rbuf[16];
    snprintf(rbuf, sizeof rbuf, "%d", replicas);
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "ftkv_replicas", rbuf);
    MPI_Info_set(info, "ftkv_timeout", "3");
    MPI_Info_set(info, "ftkv_heartbeat", "0.1");
    MPI_Info_set(info, "ftkv_suspect_after", "0.5");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "kill", info, &kv);
    MPI_Info_free(&info);
    if (rc != KV_OK) { fail("kv_open", "", rc, NULL); MPI_Finalize(); return 1; }
    if (rank == 0) printf("kill_rank: %d ranks, %d copies per key, victim rank %d\n", size, replicas, victim);

    unsigned char val[1024], buf[1024];
    char key[64];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "k/%d/%d", rank, i);
        size_t len = fill(val, rank, i);
        if ((rc = kv_put(kv, key, strlen(key), val, len)) != KV_OK) fail("kv_put", key, rc, kv);
    }
    if ((rc = kv_fence(kv)) != KV_OK) fail("kv_fence", "", rc, kv);
    MPI_Barrier(MPI_COMM_WORLD);

    if (rank == victim) {
        printf("kill_rank: rank %d killing itself with SIGKILL\n", rank);
        fflush(stdout);
        raise(SIGKILL);
    }
    double died = now();
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL); /* the victim is dead, but not yet known to be */

    /* Every writer's keys (the victim's too), byte for byte from any live holder. */
    int readable = 0, lost = 0, slowest_ms = 0;
    for (int w = 0; w < size; w++) {
        for (int i = 0; i < KEYS; i++) {
            snprintf(key, sizeof key, "k/%d/%d", w, i);
            int ranks[8], n = 0;
            if ((rc = kv_locate(kv, key, strlen(key), ranks, 8, &n)) != KV_OK || n != (replicas < size ? replicas : size)) {
                fail("kv_locate", key, rc, kv);
                continue;
            }
            int live = 0;
            for (int j = 0; j < n; j++) live |= ranks[j] != victim;
            size_t got = 0, want = fill(val, w, i);
            double t0 = now();
            rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &got);
            double dt = now() - t0;
            if ((int)(dt * 1000) > slowest_ms) slowest_ms = (int)(dt * 1000);
            if (dt > 2.0) {
                printf("kill_rank: rank %d FAIL kv_get of '%s' took %.2f s (failover must not wait for ftkv_timeout)\n", rank, key, dt);
                failures++;
            }
            if (live) {
                if (rc != KV_OK) fail("kv_get of a key with a live holder", key, rc, kv);
                else if (got != want || memcmp(buf, val, want) != 0) fail("kv_get returned different bytes", key, rc, kv);
                else readable++;
            } else {
                if (rc != KV_EPROCFAILED) fail("kv_get of a key held only by the dead rank", key, rc, kv);
                else lost++;
            }
        }
    }
    /* The victim is reported (detected here, or announced by the rank that watches it). */
    int failed[8], nfailed = 0;
    double detected = -1;
    while (now() - died < 5.0) {
        if ((rc = kv_failed(kv, failed, 8, &nfailed)) != KV_OK) { fail("kv_failed", "", rc, kv); break; }
        if (nfailed >= 1) { detected = now() - died; break; }
        nanosleep(&pause, NULL);
    }
    if (nfailed != 1 || failed[0] != victim) {
        printf("kill_rank: rank %d FAIL kv_failed reports %d ranks (first %d), want exactly the victim %d\n", rank, nfailed,
               nfailed ? failed[0] : -1, victim);
        failures++;
    }
    printf("kill_rank: rank %d read %d keys byte for byte after the death (slowest get %d ms), %d held only by the victim "
           "gave KV_EPROCFAILED; victim reported by kv_failed %.2f s after its death or earlier\n", rank, readable, slowest_ms, lost,
           detected);

    /* A put and a fence after the death. */
    snprintf(key, sizeof key, "after/%d", rank);
    if ((rc = kv_put(kv, key, strlen(key), "x", 1)) != KV_OK) fail("kv_put after the death", key, rc, kv);
    double t0 = now();
    rc = kv_fence(kv);
    expect_timeout("kv_fence with a dead member", "", rc, now() - t0, kv);
    size_t got = 0;
    rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &got);
    if (rc != KV_ETIMEDOUT) fail("a call after the failed fence must report it", key, rc, kv);

    t0 = now();
    rc = kv_close(&kv);
    double dt = now() - t0;
    if (kv != NULL) fail("kv_close left the handle set", "", rc, NULL);
    if (rc != KV_ETIMEDOUT) fail("kv_close after the failed fence", "", rc, NULL);
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
