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
 *  - a put and a fence after the death: the fence returns KV_EPROCFAILED well before T (the
 *    survivors agreed on a view without the victim), and the retried fence completes;
 *  - in the shrunk store (epoch 1, size - 1 members): every key readable before reads back byte
 *    for byte again, keys whose every copy died are still KV_EPROCFAILED (not "not found"), the
 *    survivors' new keys are there, and the copies held (summed over kv_comm's communicator) are
 *    exactly min(r, size - 1) per key: re-replication restored every copy and dropped the extras;
 *  - kv_close returns KV_OK.
 * Each survivor prints "kill_rank: rank N PASS" or FAIL lines; MPI_COMM_WORLD has a dead member, so
 * there is no collective verdict: the driver script checks every survivor's line.
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
#include "kill_common.h"

#define KEYS 64
#define TIMEOUT_S 3.0

static int rank, size, failures;

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

static int get_retrying(kv_store *kv, const char *key, void *buf, size_t bufsize, size_t *got) {
    int rc = kv_get(kv, key, strlen(key), buf, bufsize, got);
    if (rc == KV_EPROCFAILED && view_changed(kv)) rc = kv_get(kv, key, strlen(key), buf, bufsize, got);
    return rc;
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
    /* Which keys keep a live holder: from the placement before the death. */
    static char has_live[64][KEYS];
    for (int w = 0; w < size && w < 64; w++) {
        for (int i = 0; i < KEYS; i++) {
            snprintf(key, sizeof key, "k/%d/%d", w, i);
            int ranks[8], n = 0;
            if ((rc = kv_locate(kv, key, strlen(key), ranks, 8, &n)) != KV_OK || n != (replicas < size ? replicas : size)) {
                fail("kv_locate", key, rc, kv);
                continue;
            }
            has_live[w][i] = 0;
            for (int j = 0; j < n; j++) has_live[w][i] |= ranks[j] != victim;
        }
    }
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
            int live = has_live[w][i];
            size_t got = 0, want = fill(val, w, i);
            double t0 = now();
            rc = get_retrying(kv, key, buf, sizeof buf, &got);
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
        if ((rc = kv_failed(kv, failed, 8, &nfailed)) == KV_EPROCFAILED && view_changed(kv)) rc = kv_failed(kv, failed, 8, &nfailed);
        if (rc != KV_OK) { fail("kv_failed", "", rc, kv); break; }
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

    /* A put and a fence after the death: the fence returns KV_EPROCFAILED once the survivors have
     * moved to a view without the victim (promptly, not after ftkv_timeout), and the retried
     * fence completes on the survivors. */
    snprintf(key, sizeof key, "after/%d", rank);
    if ((rc = kv_put(kv, key, strlen(key), "x", 1)) == KV_EPROCFAILED && view_changed(kv)) rc = kv_put(kv, key, strlen(key), "x", 1);
    if (rc != KV_OK) fail("kv_put after the death", key, rc, kv);
    double t0 = now();
    rc = kv_fence(kv);
    double dt = now() - t0;
    if (rc == KV_EPROCFAILED && view_changed(kv)) rc = kv_fence(kv);
    if (rc != KV_OK) fail("kv_fence after the death (retried once after KV_EPROCFAILED)", "", rc, kv);
    if (reports != 1) {
        printf("kill_rank: rank %d FAIL the view change was reported %d times (want exactly once)\n", rank, reports);
        failures++;
    }
    if (dt > TIMEOUT_S * 0.8) {
        printf("kill_rank: rank %d FAIL kv_fence took %.2f s to report the failure (ftkv_timeout %.0f s)\n", rank, dt, TIMEOUT_S);
        failures++;
    }
    uint64_t epoch = 0, members = 0;
    kv_stat(kv, KV_STAT_EPOCH, &epoch);
    kv_stat(kv, KV_STAT_SIZE, &members);
    if (epoch != 1 || members != (uint64_t)size - 1) {
        printf("kill_rank: rank %d FAIL after the view change: epoch %llu, %llu members (want 1, %d)\n", rank,
               (unsigned long long)epoch, (unsigned long long)members, size - 1);
        failures++;
    }
    /* Everything again, from the shrunk store: re-replicated keys byte for byte, the survivors'
     * new keys, and the keys whose every copy died still reported as such. */
    int again = 0;
    for (int w = 0; w < size; w++) {
        for (int i = 0; i < KEYS; i++) {
            snprintf(key, sizeof key, "k/%d/%d", w, i);
            size_t got = 0, want = fill(val, w, i);
            rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &got);
            if (has_live[w][i] && rc == KV_OK && got == want && memcmp(buf, val, want) == 0) again++;
            else if (has_live[w][i] || rc != KV_EPROCFAILED) fail("kv_get after the view change", key, rc, kv);
        }
        if (w == victim) continue;
        snprintf(key, sizeof key, "after/%d", w);
        size_t got = 0;
        if ((rc = kv_get(kv, key, strlen(key), buf, sizeof buf, &got)) != KV_OK || got != 1 || buf[0] != 'x')
            fail("kv_get of a key fenced after the view change", key, rc, kv);
    }
    if (again != readable) {
        printf("kill_rank: rank %d FAIL %d keys readable after the view change, %d before it\n", rank, again, readable);
        failures++;
    }
    /* Each key with a live holder has ftkv_replicas copies again, on live ranks only. */
    uint64_t held = 0, total = 0;
    kv_stat(kv, KV_STAT_LOCAL_KEYS, &held);
    MPI_Comm live;
    if ((rc = kv_comm(kv, &live)) != KV_OK) fail("kv_comm", "", rc, kv);
    else {
        int lsize = 0;
        MPI_Comm_size(live, &lsize);
        MPI_Allreduce(&held, &total, 1, MPI_UINT64_T, MPI_SUM, live);
        uint64_t want = (uint64_t)(readable + (size - 1)) * (uint64_t)(replicas < size - 1 ? replicas : size - 1);
        if (lsize != size - 1 || total != want) {
            printf("kill_rank: rank %d FAIL kv_comm has %d ranks (want %d); %llu copies held, want %llu\n", rank, lsize, size - 1,
                   (unsigned long long)total, (unsigned long long)want);
            failures++;
        }
    }

    t0 = now();
    rc = kv_close(&kv);
    dt = now() - t0;
    if (kv != NULL) fail("kv_close left the handle set", "", rc, NULL);
    if (rc != KV_OK) fail("kv_close after the view change", "", rc, NULL);
    printf("kill_rank: rank %d after the view change: %d keys byte for byte, %llu copies on %d ranks; kv_close rc %d after %.2f s\n",
           rank, again, (unsigned long long)total, size - 1, rc, dt);
    if (failures == 0) printf("kill_rank: rank %d PASS\n", rank);
    fflush(stdout);
    MPI_Finalize();
    return failures != 0;
}
