/*
 * online.c - a rank is SIGKILLed from outside at a random moment of a put/fence/get workload; the
 * survivors recover online (no restart) and nothing acknowledged is lost.
 *
 * Run under `mpirun --enable-recovery` by tests/kill/online.sh, which kills rank ONLINE_VICTIM
 * (kill -9 of the PID it wrote to ONLINE_DIR) after a random delay. ftkv_replicas = ONLINE_REPLICAS
 * (default 2). Each rank, for ONLINE_STEPS steps:
 *  - puts KEYS keys of this step (s<step>/r<rank>/<i>) and overwrites its KEYS rolling keys
 *    (cur/r<rank>/<i>) with this step's values, deletes the keys of two steps ago whose i is odd;
 *  - kv_fence, retried after KV_EPROCFAILED (the documented protocol);
 *  - reads the step's keys of the next rank, byte for byte (the victim's only while they are known
 *    to be acknowledged);
 *  - sleeps ONLINE_STEP_MS (default 0), so that the workload lasts long enough for the kill to
 *    land in it however fast the machine (online.sh sets it from the kill delay);
 * With ONLINE_COMMIT=1 the survivors then kv_commit what the shrunk store holds (with the record
 * of what was acknowledged), and online.sh restarts it on another number of ranks
 * (ONLINE_VERIFY=1), which checks all of it again: a commit after a view change restarts right.
 * ONLINE_VICTIM may list several ranks, killed at the same moment (a node: ONLINE_RANKS_PER_NODE
 * groups ranks into nodes; or two failures with 3 copies) or one by one (online.sh KILL_GAP_MS,
 * down to a single survivor).
 * The victim never finishes: after its steps it waits to be killed. With ONLINE_STOPPED=1 the
 * victim is stopped (SIGSTOP) past the suspicion time instead, then continued: it must find itself
 * excluded (a call returns KV_EPROCFAILED and kv_errmsg says so), print "online: rank N excluded"
 * and leave; the survivors' checks are the same. A fence that returned KV_OK
 * before the view change acknowledges every rank's writes of that step, the victim's included;
 * one retried after it acknowledges the survivors'. After the steps every survivor checks every
 * acknowledged key of every writer byte for byte (and the deleted ones gone), each view change
 * was reported once (one per failure at most), and kv_comm's communicator holds the survivors;
 * the survivors agree on the verdict over it and print "online: rank N PASS".
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ftkv.h"
#include "kill_common.h"

#define KEYS 100
#define MAX_STEPS 400

static int rank, size, world_size, failures, step, change_step = -1;

static int stopped_mode, victim, nvictims;
static char victims[1024]; /* victims[w]: rank w is killed (ONLINE_VICTIM: one rank or a list) */

static void excluded_exit(kv_store **kv, int rc);

static void fail(const char *what, const char *key, int rc, const kv_store *kv) {
    if (stopped_mode && victims[rank] && rc == KV_EPROCFAILED && strstr(kv_errmsg(kv), "excluded"))
        excluded_exit((kv_store **)&kv, rc);
    if (failures < 20)
        printf("online: rank %d FAIL %s (key '%s'): rc %d (%s) %s\n", rank, what, key, rc, kv_strerror(rc), kv_errmsg(kv));
    failures++;
}

/* Value of key i of writer w at step s: length and bytes depend only on (s, w, i). */
static size_t fill(unsigned char *buf, int s, int w, int i) {
    size_t len = 16 + (size_t)(s * 131 + w * 37 + i * 11) % 1500;
    unsigned x = (unsigned)(s * 2654435761u + w * 7919 + i * 104729 + 1);
    for (size_t j = 0; j < len; j++) { x = x * 1103515245u + 12345u; buf[j] = (unsigned char)(x >> 16); }
    return len;
}

/* The stopped victim, woken up: excluded, as it must be. */
static void excluded_exit(kv_store **kv, int rc) {
    printf("online: rank %d excluded after being stopped: rc %d (%s) %s\n", rank, rc, kv_strerror(rc), kv_errmsg(*kv));
    kv_store *handle = *kv;
    int crc = kv_close(&handle);
    printf("online: rank %d kv_close after the exclusion: rc %d; leaves\n", rank, crc);
    fflush(stdout);
    MPI_Finalize();
    exit(0);
}

/* Retried after each view change it reports (two failures can make two view changes). */
#define RETRYING(call) ({ int rc_ = (call); for (int n_ = 0; n_ < 4 && rc_ == KV_EPROCFAILED && view_changed(kv); n_++) rc_ = (call); rc_; })

static void expect_value(kv_store *kv, const char *key, int s, int w, int i) {
    static unsigned char want[2048], got[2048];
    size_t n = 0, len = fill(want, s, w, i);
    int rc = RETRYING(kv_get(kv, key, strlen(key), got, sizeof got, &n));
    if (rc != KV_OK) fail("kv_get of an acknowledged key", key, rc, kv);
    else if (n != len || memcmp(got, want, len) != 0) fail("kv_get returned other bytes", key, rc, kv);
}

static void expect_gone(kv_store *kv, const char *key) {
    unsigned char got[2048];
    size_t n = 0;
    int rc = RETRYING(kv_get(kv, key, strlen(key), got, sizeof got, &n));
    if (rc != KV_ENOTFOUND) fail("kv_get of a deleted key", key, rc, kv);
}

/* The survivors' keys of every step, and the victims' of the steps acknowledged before the
 * first view change (fully[s]), byte for byte; deleted keys gone. Returns the keys checked. */
static int check_all(kv_store *kv, int steps, const char *fully, const char *acked) {
    char key[96];
    int checked = 0;
    for (int s = 0; s < steps; s++) {
        for (int w = 0; w < size; w++) {
            int known = victims[w] ? fully[s] : acked[s];
            if (!known) continue;
            for (int i = 0; i < KEYS; i++) {
                snprintf(key, sizeof key, "s%d/r%d/%d", s, w, i);
                /* Deleted two steps later if that step is acknowledged; maybe, if the victim's
                 * step was not (it may have reached some replicas). */
                int deleted = i % 2 && s + 2 < steps && (victims[w] ? fully[s + 2] : acked[s + 2]);
                int maybe = i % 2 && s + 2 < steps && victims[w] && !fully[s + 2];
                if (maybe) continue;
                if (deleted) expect_gone(kv, key);
                else expect_value(kv, key, s, w, i);
                checked++;
            }
        }
    }
    for (int w = 0; w < size; w++) {
        if (victims[w]) continue;
        for (int i = 0; i < KEYS; i++) {
            snprintf(key, sizeof key, "cur/r%d/%d", w, i);
            expect_value(kv, key, steps - 1, w, i);
        }
    }
    return checked;
}

static int first_survivor(void) {
    int r = 0;
    while (r < size && victims[r]) r++;
    return r;
}

/* ONLINE_VERIFY=1: a restarted job (any number of ranks) loads the version the survivors
 * committed and checks all of it. */
static int verify_restart(void) {
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "online", MPI_INFO_NULL, &kv);
    if (rc != KV_OK) { fail("kv_open of the committed store", "", rc, NULL); return 1; }
    int64_t meta[2] = {0, 0};
    size_t len = 0;
    static char fully[MAX_STEPS], acked[MAX_STEPS];
    if ((rc = kv_get(kv, "meta/run", 8, meta, sizeof meta, &len)) != KV_OK || len != sizeof meta || meta[0] < 3 ||
        meta[0] > MAX_STEPS || meta[1] < 3 || meta[1] > 1024) {
        fail("kv_get meta/run", "", rc, kv);
        return 1;
    }
    int steps = (int)meta[0];
    int my_rank = rank;
    size = (int)meta[1]; /* the writers: the first job's ranks */
    if ((rc = kv_get(kv, "meta/fully", 10, fully, sizeof fully, &len)) != KV_OK || len != (size_t)steps) fail("kv_get meta/fully", "", rc, kv);
    if ((rc = kv_get(kv, "meta/victims", 12, victims, sizeof victims, &len)) != KV_OK || len != (size_t)size) fail("kv_get meta/victims", "", rc, kv);
    memset(acked, 1, sizeof acked); /* every survivor completed every step before committing */
    int checked = failures ? 0 : check_all(kv, steps, fully, acked), total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    rc = kv_close(&kv);
    if (rc != KV_OK) fail("kv_close", "", rc, NULL);
    if (my_rank == 0)
        printf("online: verify: a restart on %d ranks of the version committed by the survivors: %d keys checked by rank 0, "
               "%d failures\n", world_size, checked, total);
    if (failures == 0 && total == 0 && my_rank == 0) printf("online: verify PASS\n");
    return failures != 0 || total != 0;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    world_size = size;
    if (env_long("ONLINE_VERIFY", 0)) {
        int bad = verify_restart();
        fflush(stdout);
        MPI_Finalize();
        return bad;
    }
    /* ONLINE_VICTIM: "3" or "1,2" (killed at the same moment). */
    const char *vlist = getenv("ONLINE_VICTIM");
    char vbuf[256];
    snprintf(vbuf, sizeof vbuf, "%s", vlist && *vlist ? vlist : "-1");
    victim = -1;
    for (char *tok = strtok(vbuf, ","); tok; tok = strtok(NULL, ",")) {
        int v = atoi(tok) < 0 ? size - 1 : atoi(tok);
        if (v >= 0 && v < size && v < 1024 && !victims[v]) { victims[v] = 1; nvictims++; if (victim < 0) victim = v; }
    }
    stopped_mode = (int)env_long("ONLINE_STOPPED", 0);
    int steps = (int)env_long("ONLINE_STEPS", 40);
    long step_ms = env_long("ONLINE_STEP_MS", 0);
    int replicas = (int)env_long("ONLINE_REPLICAS", 2);
    const char *dir = getenv("ONLINE_DIR");
    if (size < 3 || nvictims < 1 || nvictims >= size || steps < 3 || steps > MAX_STEPS || !dir) {
        if (rank == 0) printf("online: needs 3+ ranks, a victim among them, 3..%d steps and ONLINE_DIR\n", MAX_STEPS);
        MPI_Finalize();
        return 1;
    }
    /* ONLINE_RANKS_PER_NODE=k: ranks play nodes of k ranks each (FTKV_NODE), so that killing
     * one node's ranks together is a node failure: placement keeps each key's copies on
     * different nodes. */
    long per_node = env_long("ONLINE_RANKS_PER_NODE", 0);
    if (per_node > 0) {
        char node[32];
        snprintf(node, sizeof node, "node%ld", rank / per_node);
        setenv("FTKV_NODE", node, 1);
    }
    char rbuf[16];
    snprintf(rbuf, sizeof rbuf, "%d", replicas);
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "ftkv_replicas", rbuf);
    MPI_Info_set(info, "ftkv_timeout", "20");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "online", info, &kv);
    MPI_Info_free(&info);
    if (rc != KV_OK) { fail("kv_open", "", rc, NULL); MPI_Finalize(); return 1; }
    if (rank == 0) printf("online: %d ranks, %d copies per key, %d steps, %d victim(s), the first rank %d\n", size, replicas, steps, nvictims, victim);
    MPI_Barrier(MPI_COMM_WORLD);
    fflush(stdout);
    /* The PID, which starts online.sh's kill clock, only once the store is open everywhere:
     * kv_open is collective, and a rank killed inside it (a 42 ms delay did that) fails the
     * others' open, which is not the online recovery this test checks. */
    char path[512];
    snprintf(path, sizeof path, "%s/pid.%d", dir, rank);
    FILE *f = fopen(path, "w");
    if (f) { fprintf(f, "%d\n", (int)getpid()); fclose(f); }

    /* fully[s]: the fence of step s returned KV_OK before any view change (every writer's data,
     * the victim's included, is acknowledged). acked[s]: this rank's fence of step s returned OK. */
    static char fully[MAX_STEPS], acked[MAX_STEPS];
    unsigned char val[2048];
    char key[96];
    double changed_at = 0;
    for (int s = 0; s < steps; s++) {
        step = s;
        for (int i = 0; i < KEYS; i++) {
            size_t len = fill(val, s, rank, i);
            snprintf(key, sizeof key, "s%d/r%d/%d", s, rank, i);
            if ((rc = RETRYING(kv_put(kv, key, strlen(key), val, len))) != KV_OK) fail("kv_put", key, rc, kv);
            snprintf(key, sizeof key, "cur/r%d/%d", rank, i);
            if ((rc = RETRYING(kv_put(kv, key, strlen(key), val, len))) != KV_OK) fail("kv_put", key, rc, kv);
            if (s >= 2 && i % 2) {
                snprintf(key, sizeof key, "s%d/r%d/%d", s - 2, rank, i);
                if ((rc = RETRYING(kv_del(kv, key, strlen(key)))) != KV_OK) fail("kv_del", key, rc, kv);
            }
        }
        uint64_t before = seen_epoch;
        double t0 = now();
        rc = kv_fence(kv);
        for (int n = 0; n < 4 && rc == KV_EPROCFAILED && view_changed(kv); n++) rc = kv_fence(kv);
        if (rc != KV_OK) { fail("kv_fence (retried after each KV_EPROCFAILED)", "", rc, kv); break; }
        acked[s] = 1;
        fully[s] = seen_epoch == 0 && before == 0;
        if (seen_epoch != before) changed_at = now() - t0;
        if (reports && change_step < 0) change_step = s;
        /* The next writer's keys of this step. */
        int w = (rank + 1) % size;
        if (!victims[w] || fully[s]) {
            for (int i = 0; i < KEYS; i += 7) {
                snprintf(key, sizeof key, "s%d/r%d/%d", s, w, i);
                expect_value(kv, key, s, w, i);
            }
        }
        if (step_ms > 0) {
            struct timespec step_pause = {step_ms / 1000, (step_ms % 1000) * 1000000L};
            nanosleep(&step_pause, NULL);
        }
        if (victims[rank] && s == steps - 1) {
            printf("online: rank %d finished its steps and waits to be killed or stopped\n", rank);
            fflush(stdout);
            for (;;) {
                uint64_t e;
                struct timespec pause_ts = {0, 50 * 1000 * 1000};
                /* An earlier victim's death is reported here once, like any call's (victims
                 * killed one by one): the store goes on. Exclusion is not: fail() leaves. */
                if ((rc = RETRYING(kv_stat(kv, KV_STAT_EPOCH, &e))) != KV_OK) fail("kv_stat while waiting", "", rc, kv);
                nanosleep(&pause_ts, NULL);
            }
        }
    }
    /* The victim may be killed only after the survivors' last step: wait for the view change
     * (a view change that had not reached a call yet is reported by the next one). */
    double waited = now();
    uint64_t epoch = 0, members = size;
    while (members != (uint64_t)(size - nvictims) && now() - waited < 60) {
        struct timespec pause_ts = {0, 20 * 1000 * 1000};
        if (!view_changed(kv)) nanosleep(&pause_ts, NULL);
        if (kv_stat(kv, KV_STAT_SIZE, &members) != KV_OK) members = size;
    }
    rc = kv_stat(kv, KV_STAT_EPOCH, &epoch);
    if (rc == KV_EPROCFAILED) { view_changed(kv); rc = kv_stat(kv, KV_STAT_EPOCH, &epoch); }
    kv_stat(kv, KV_STAT_SIZE, &members);
    /* One view change per failure at most (simultaneous ones may share one), each reported once. */
    if (epoch < 1 || epoch > (uint64_t)nvictims || members != (uint64_t)(size - nvictims) || reports < 1 ||
        (uint64_t)reports > epoch) {
        printf("online: rank %d FAIL epoch %llu, %llu members, the view change reported %d times (want 1..%d, %d, once each)\n",
               rank, (unsigned long long)epoch, (unsigned long long)members, reports, nvictims, size - nvictims);
        failures++;
    }

    /* Everything acknowledged, from every writer. */
    int last_full = -1;
    for (int s = 0; s < steps; s++)
        if (fully[s]) last_full = s;
    int checked = check_all(kv, steps, fully, acked);
    /* ONLINE_COMMIT=1: the shrunk store commits what it holds; online.sh restarts it on another
     * number of ranks (ONLINE_VERIFY=1), which must find all of it. */
    if (getenv("ONLINE_COMMIT") && atoi(getenv("ONLINE_COMMIT"))) {
        if (rank == first_survivor()) {
            int64_t meta[2] = {steps, size};
            if ((rc = kv_put(kv, "meta/run", 8, meta, sizeof meta)) != KV_OK) fail("kv_put meta/run", "", rc, kv);
            if ((rc = kv_put(kv, "meta/fully", 10, fully, (size_t)steps)) != KV_OK) fail("kv_put meta/fully", "", rc, kv);
            if ((rc = kv_put(kv, "meta/victims", 12, victims, (size_t)size)) != KV_OK) fail("kv_put meta/victims", "", rc, kv);
        }
        uint64_t version = 0;
        if ((rc = RETRYING(kv_commit(kv, &version))) != KV_OK) fail("kv_commit after the view change", "", rc, kv);
        else if (rank == first_survivor()) printf("online: committed version %llu on %d survivors\n", (unsigned long long)version, size - nvictims);
    }
    MPI_Comm live = MPI_COMM_NULL;
    int lsize = 0, total = 0;
    if ((rc = kv_comm(kv, &live)) != KV_OK) fail("kv_comm", "", rc, kv);
    else {
        MPI_Comm_size(live, &lsize);
        if (lsize != size - nvictims) { printf("online: rank %d FAIL kv_comm has %d ranks\n", rank, lsize); failures++; }
        MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, live);
    }
    rc = kv_close(&kv);
    if (rc != KV_OK) fail("kv_close", "", rc, NULL);
    printf("online: rank %d view change reported during step %d (a fence it interrupted took %.3f s), last step acknowledged by all %d, "
           "%d keys checked; %d failures among the survivors\n", rank, change_step, changed_at, last_full, checked, total);
    if (failures == 0 && total == 0) printf("online: rank %d PASS\n", rank);
    fflush(stdout);
    MPI_Finalize();
    return failures != 0;
}
