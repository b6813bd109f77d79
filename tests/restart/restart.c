/*
 * restart.c - one step of a checkpoint/restart scenario (tests/restart/run.sh chains them).
 *
 *   restart write        commit version 1, then version 2 (overwrites, deletes, new keys), then
 *                        write more without committing and SIGKILL every rank: "the job dies";
 *                        with WAIT_FLUSH=1 it first waits until version 2 is in FTKV_FLUSH_DIR
 *   restart check        open (loads the newest version) and check every key, byte for byte,
 *                        against EXPECT_STATE (1, 2 or 3) and EXPECT_VERSION (KV_STAT_VERSION)
 *   restart advance      check state 2, then change keys into state 3 and commit
 *   restart expect-loss  kv_open must fail with KV_EDATALOSS on every rank, naming EXPECT_LOST
 *   restart commit-fail  check state EXPECT_STATE, write state 3, kv_commit must return
 *                        EXPECT_RC on every rank, the handle must stay usable, then close
 *   restart recommit     check EXPECT_STATE, then commit three times without changing anything
 *                        (the 2nd and 3rd reuse the 1st's files as hard links)
 *   restart chain        check state 2, commit (a base file), then go to state 3, back to 2 and to 3
 *                        again, committing each (delta files on the base)
 *   restart soak         (scripts/soak-commit.sh) check that the store is exactly some committed
 *                        step's state, then commit step after step until killed (or SOAK_STEPS)
 *   restart flush-fail   with an unusable FTKV_FLUSH_DIR: kv_commit succeeds, kv_flush_status
 *                        reports KV_EIO for it and KV_ENOTFOUND for a version never committed
 *   restart big          open, put BIG_BYTES per rank in 1 MiB values, kv_commit must return
 *                        EXPECT_RC (a full disk), then the handle stays usable
 *
 * Keys: "key/<i>" for i in [0, 2 * KEYS_TOTAL); rank r of the writing job writes the i with
 * i % size == r. Checks cover every i on every rank (i % size == rank), so gets cross ranks.
 * Values: t_fill bytes of a length and seed that depend only on (i, tag): any rank can check.
 */
#include "common.h"

#include <signal.h>
#include <unistd.h>

static long keys_total;

static uint64_t tag_seed(long i, int tag) { return t_mix((uint64_t)i * 1315423911u + (uint64_t)tag * 2654435761u); }

static size_t value_len(long i, int tag)
{
    if (i % 101 == 7) return 40000 + (size_t)(i % 1000); /* some large values */
    if (i % 53 == 0) return 0;                            /* some empty values */
    return 1 + (size_t)(tag_seed(i, tag) % 300);
}

/* The tag of key i in a state (0: the key must not exist). */
static int state_tag(int state, long i)
{
    long k = keys_total;
    if (state == 1) return i < k ? 1 : 0;
    int t2 = 0;
    if (i < k) t2 = (i % 5 == 0) ? 0 : (i % 3 == 0) ? 2 : 1;
    else if (i < k + k / 4) t2 = 2;
    if (state == 2) return t2;
    /* state 3, reached from 2 by `advance` */
    if (i >= k + k / 4) return 0;
    if (i % 11 == 0) return 0;
    if (i % 7 == 0) return 3;
    return t2;
}

/* The uncommitted writes that die with the job (never visible after a restart). */
static int doomed_tag(long i) { return (i % 2 == 0 || i >= keys_total + keys_total / 4) ? 9 : -1; }

static void key_of(long i, char *key, size_t *klen) { *klen = (size_t)sprintf(key, "key/%ld", i); }

/* A job in which a rank is killed on purpose (FTKV_TEST_FAULT=die-*, or the soak's kill -9) runs
 * without --enable-recovery, so mpirun ends it; the survivors may first detect the death and get
 * KV_EPROCFAILED (online recovery): they wait for the end instead of reporting a failure. */
static int planned_death;

static void end_of_job_if_planned(kv_store *kv, int rc)
{
    if (rc != KV_EPROCFAILED || !planned_death) return;
    printf("restart: rank %d: the failure was reported (%s); waiting for mpirun to end the job\n", t_rank, kv_errmsg(kv));
    fflush(stdout);
    for (;;) pause();
}

static void put_tag(kv_store *kv, long i, int tag)
{
    char key[64];
    size_t klen;
    key_of(i, key, &klen);
    if (tag == 0) {
        int rc = kv_del(kv, key, klen);
        end_of_job_if_planned(kv, rc);
        CHECK_RC(kv, rc, KV_OK, key, klen, "kv_del");
        return;
    }
    size_t len = value_len(i, tag);
    unsigned char *v = t_xmalloc(len);
    t_fill(v, len, tag_seed(i, tag));
    int rc = kv_put(kv, key, klen, v, len);
    end_of_job_if_planned(kv, rc);
    CHECK_RC(kv, rc, KV_OK, key, klen, "kv_put");
    free(v);
}

/* Moves this rank's keys from state `from` (0: nothing) to state `to`. */
static void write_state(kv_store *kv, int from, int to)
{
    for (long i = t_rank; i < 2 * keys_total; i += t_size) {
        int a = from ? state_tag(from, i) : 0, b = state_tag(to, i);
        if (a != b) put_tag(kv, i, b);
    }
}

static void commit_expect(kv_store *kv, int expect_rc, uint64_t *version)
{
    uint64_t v = 0;
    int rc = kv_commit(kv, &v);
    end_of_job_if_planned(kv, rc);
    CHECK_RC(kv, rc, expect_rc, "", (size_t)0, "kv_commit");
    if (version) *version = v;
}

static long check_state(kv_store *kv, int state)
{
    long checked = 0, live = 0;
    unsigned char *buf = t_xmalloc(65536), *want = t_xmalloc(65536);
    for (long i = t_rank; i < 2 * keys_total; i += t_size) {
        char key[64];
        size_t klen, got = 12345;
        key_of(i, key, &klen);
        int tag = state_tag(state, i);
        int rc = kv_get(kv, key, klen, buf, 65536, &got);
        if (tag == 0) {
            CHECK_RC(kv, rc, KV_ENOTFOUND, key, klen, "kv_get of a key that must be absent");
        } else {
            size_t len = value_len(i, tag);
            t_fill(want, len, tag_seed(i, tag));
            CHECK_RC(kv, rc, KV_OK, key, klen, "kv_get");
            if (rc == KV_OK) {
                CHECK(got == len && memcmp(buf, want, len) == 0,
                      "key %s: wrong bytes (%zu bytes, want %zu of tag %d)", key, got, len, tag);
                live++;
            }
        }
        checked++;
    }
    free(buf);
    free(want);
    long all_live = 0;
    MPI_Allreduce(&live, &all_live, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    /* Every live key is stored exactly r times in total. */
    uint64_t local = 0, replicas = 0;
    CHECK(kv_stat(kv, KV_STAT_LOCAL_KEYS, &local) == KV_OK, "kv_stat LOCAL_KEYS");
    CHECK(kv_stat(kv, KV_STAT_REPLICAS, &replicas) == KV_OK, "kv_stat REPLICAS");
    unsigned long long sum = 0, mine = local;
    MPI_Allreduce(&mine, &sum, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    CHECK(sum == (unsigned long long)all_live * replicas, "stored copies: %llu, want %ld keys x %llu",
          sum, all_live, (unsigned long long)replicas);
    if (t_rank == 0) printf("restart: state %d checked, %ld live keys, %llu copies\n", state, all_live, sum);
    return checked;
}

/* Soak states: step s rewrites the keys with i % 10 == s % 10 with value (i, 100 + s), or deletes
 * them when s % 3 == 0; the others keep what an earlier step gave them. So each commit changes a
 * tenth of the keys (kv_commit writes deltas) and a restart that mixed two steps, or lost a
 * delta, is caught by the values. soak_tag is the tag key i has at step s (0: absent). */
static long soak_tag(long i, long s)
{
    long last = s - (((s - i % 10) % 10) + 10) % 10; /* the latest step <= s that touched key i */
    if (last < 1 || last % 3 == 0) return 0;
    return 100 + last;
}

static long soak_check(kv_store *kv)
{
    int64_t step = 0;
    size_t len = 0;
    int rc = kv_get(kv, "soak/step", 9, &step, sizeof step, &len);
    if (rc == KV_ENOTFOUND) return 0;
    CHECK_RC(kv, rc, KV_OK, "soak/step", (size_t)9, "kv_get");
    unsigned char *buf = t_xmalloc(65536), *want = t_xmalloc(65536);
    long bad = 0;
    for (long i = t_rank; i < keys_total; i += t_size) {
        char key[64];
        size_t klen, got = 0;
        key_of(i, key, &klen);
        rc = kv_get(kv, key, klen, buf, 65536, &got);
        long tag = soak_tag(i, step);
        if (tag == 0) {
            if (rc != KV_ENOTFOUND) bad++;
            continue;
        }
        size_t wl = value_len(i, (int)tag);
        t_fill(want, wl, tag_seed(i, (int)tag));
        if (rc != KV_OK || got != wl || memcmp(buf, want, wl) != 0) bad++;
    }
    CHECK(bad == 0, "%ld keys differ from step %lld's state", bad, (long long)step);
    free(buf);
    free(want);
    return (long)step;
}

/* Polls kv_flush_status until `version` is flushed; returns the last result code. */
static int wait_flushed(kv_store *kv, uint64_t version, double seconds)
{
    double t0 = MPI_Wtime();
    int flushed = 0, rc;
    while ((rc = kv_flush_status(kv, version, &flushed)) == KV_OK && !flushed && MPI_Wtime() - t0 < seconds) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc == KV_OK && !flushed) return KV_ETIMEDOUT;
    return rc;
}

static void expect_version(kv_store *kv)
{
    long want = t_env_long("EXPECT_VERSION", -1);
    uint64_t v = 0;
    CHECK(kv_stat(kv, KV_STAT_VERSION, &v) == KV_OK, "kv_stat VERSION");
    if (want >= 0) CHECK(v == (uint64_t)want, "loaded version %llu, want %ld", (unsigned long long)v, want);
    long repaired = t_env_long("EXPECT_REPAIRED", -1);
    uint64_t rep = 0;
    CHECK(kv_stat(kv, KV_STAT_REPAIRED_FILES, &rep) == KV_OK, "kv_stat REPAIRED_FILES");
    if (repaired >= 0) CHECK(rep == (uint64_t)repaired, "repaired files %llu, want %ld", (unsigned long long)rep, repaired);
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "restart");
    const char *mode = argc > 1 ? argv[1] : "";
    const char *fault = getenv("FTKV_TEST_FAULT");
    planned_death = fault && strncmp(fault, "die-", 4) == 0;
    keys_total = t_env_long("KEYS_TOTAL", 4000);

    if (strcmp(mode, "expect-loss") == 0) {
        kv_store *kv = NULL;
        int rc = kv_open(MPI_COMM_WORLD, "ckpt", MPI_INFO_NULL, &kv);
        CHECK(rc == KV_EDATALOSS, "kv_open returned %d (%s), want KV_EDATALOSS", rc, t_strerror(rc));
        const char *msg = kv_errmsg(NULL), *lost = getenv("EXPECT_LOST");
        CHECK(lost == NULL || strstr(msg, lost) != NULL, "message does not name '%s': %s", lost, msg);
        if (t_rank == 0) printf("restart: kv_open refused: %s\n", msg);
        if (kv) kv_close(&kv);
        return t_finish();
    }

    kv_store *kv = t_open("ckpt");
    if (kv == NULL) return t_finish();
    if (strcmp(mode, "write") == 0) {
        uint64_t v1 = 0, v2 = 0;
        write_state(kv, 0, 1);
        commit_expect(kv, KV_OK, &v1);
        write_state(kv, 1, 2);
        commit_expect(kv, KV_OK, &v2);
        CHECK(v1 >= 1 && v2 == v1 + 1, "versions %llu then %llu", (unsigned long long)v1, (unsigned long long)v2);
        check_state(kv, 2);
        if (t_env_long("WAIT_FLUSH", 0)) {
            double t0 = MPI_Wtime();
            CHECK_RC(kv, wait_flushed(kv, v2, 60), KV_OK, "", (size_t)0, "kv_flush_status of version 2");
            if (t_rank == 0) printf("restart: version %llu flushed to the second tier in %.3f s\n", (unsigned long long)v2, MPI_Wtime() - t0);
        }
        for (long i = t_rank; i < 2 * keys_total; i += t_size)
            if (doomed_tag(i) > 0) put_tag(kv, i, doomed_tag(i));
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", (size_t)0, "kv_fence");
        MPI_Barrier(MPI_COMM_WORLD);
        long failures = 0;
        MPI_Allreduce(&t_failures, &failures, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (t_rank == 0) printf("restart: wrote versions %llu and %llu, then uncommitted writes; %s\n",
                                (unsigned long long)v1, (unsigned long long)v2, failures ? "FAILED" : "killing the job");
        fflush(stdout);
        MPI_Barrier(MPI_COMM_WORLD);
        if (failures == 0) kill(getpid(), SIGKILL);
    } else if (strcmp(mode, "check") == 0) {
        expect_version(kv);
        check_state(kv, (int)t_env_long("EXPECT_STATE", 2));
    } else if (strcmp(mode, "advance") == 0) {
        expect_version(kv);
        check_state(kv, 2);
        write_state(kv, 2, 3);
        commit_expect(kv, KV_OK, NULL);
        check_state(kv, 3);
    } else if (strcmp(mode, "soak") == 0 || strcmp(mode, "soak-check") == 0) {
        planned_death = strcmp(mode, "soak") == 0;
        uint64_t version = 0;
        kv_stat(kv, KV_STAT_VERSION, &version);
        long step = soak_check(kv);
        long all_bad = 0;
        MPI_Allreduce(&t_failures, &all_bad, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        if (t_rank == 0) printf("restart: loaded version %llu = step %ld: %s\n", (unsigned long long)version, step,
                                all_bad ? "MIXED OR DAMAGED" : "every key exactly as committed");
        printf("soak: rank %d pid %ld\n", t_rank, (long)getpid());
        fflush(stdout);
        long steps = strcmp(mode, "soak") == 0 ? t_env_long("SOAK_STEPS", 1000000) : 0;
        for (long n = 0; n < steps && all_bad == 0; n++) {
            step++;
            for (long i = t_rank; i < keys_total; i += t_size)
                if (i % 10 == step % 10) put_tag(kv, i, (int)soak_tag(i, step));
            if (t_rank == 0) {
                int64_t st = step;
                int rc = kv_put(kv, "soak/step", 9, &st, sizeof st);
                end_of_job_if_planned(kv, rc);
                CHECK_RC(kv, rc, KV_OK, "soak/step", (size_t)9, "kv_put");
            }
            commit_expect(kv, KV_OK, NULL);
        }
    } else if (strcmp(mode, "flush-fail") == 0) {
        uint64_t v = 0;
        write_state(kv, 0, 1);
        commit_expect(kv, KV_OK, &v);
        CHECK_RC(kv, wait_flushed(kv, v, 30), KV_EIO, "", (size_t)0, "kv_flush_status of a flush into an unusable directory");
        if (t_rank == 0) printf("restart: the flush failed as expected: %s\n", kv_errmsg(kv));
        int flushed = 7;
        CHECK_RC(kv, kv_flush_status(kv, v + 100, &flushed), KV_ENOTFOUND, "", (size_t)0, "kv_flush_status of a version never committed");
        CHECK_RC(kv, kv_flush_status(kv, v, NULL), KV_EINVAL, "", (size_t)0, "kv_flush_status with flushed == NULL");
        check_state(kv, 1);
    } else if (strcmp(mode, "chain") == 0) {
        expect_version(kv);
        check_state(kv, 2);
        uint64_t v[4];
        commit_expect(kv, KV_OK, &v[0]);
        write_state(kv, 2, 3);
        commit_expect(kv, KV_OK, &v[1]);
        write_state(kv, 3, 2);
        commit_expect(kv, KV_OK, &v[2]);
        write_state(kv, 2, 3);
        commit_expect(kv, KV_OK, &v[3]);
        check_state(kv, 3);
        if (t_rank == 0) printf("restart: committed versions %llu (state 2), %llu (3), %llu (2), %llu (3)\n", (unsigned long long)v[0],
                                (unsigned long long)v[1], (unsigned long long)v[2], (unsigned long long)v[3]);
    } else if (strcmp(mode, "recommit") == 0) {
        int state = (int)t_env_long("EXPECT_STATE", 2);
        expect_version(kv);
        check_state(kv, state);
        uint64_t v[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) commit_expect(kv, KV_OK, &v[i]);
        CHECK(v[1] == v[0] + 1 && v[2] == v[1] + 1, "versions %llu %llu %llu", (unsigned long long)v[0],
              (unsigned long long)v[1], (unsigned long long)v[2]);
        check_state(kv, state);
        if (t_rank == 0) printf("restart: recommitted as versions %llu, %llu, %llu\n", (unsigned long long)v[0],
                                (unsigned long long)v[1], (unsigned long long)v[2]);
    } else if (strcmp(mode, "commit-fail") == 0) {
        int state = (int)t_env_long("EXPECT_STATE", 2);
        expect_version(kv);
        check_state(kv, state);
        if (state == 2) write_state(kv, 2, 3);
        int want = (int)t_env_long("EXPECT_RC", KV_EIO);
        commit_expect(kv, want, NULL);
        /* The handle stays usable after an agreed failure: the new state is readable. */
        check_state(kv, state == 2 ? 3 : state);
        if (t_rank == 0) printf("restart: kv_commit failed as expected: %s\n", kv_strerror(want));
    } else if (strcmp(mode, "big") == 0) {
        long big = t_env_long("BIG_BYTES", 8 << 20);
        size_t chunk = 1 << 20;
        unsigned char *v = t_xmalloc(chunk);
        for (long b = 0; b * (long)chunk < big; b++) {
            char key[64];
            size_t klen = (size_t)sprintf(key, "big/%d/%ld", t_rank, b);
            t_fill(v, chunk, (uint64_t)b);
            CHECK_RC(kv, kv_put(kv, key, klen, v, chunk), KV_OK, key, klen, "kv_put");
        }
        free(v);
        int want = (int)t_env_long("EXPECT_RC", KV_EIO);
        commit_expect(kv, want, NULL);
        if (want != KV_OK && t_rank == 0) printf("restart: kv_commit failed as expected: %s\n", kv_errmsg(kv));
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", (size_t)0, "kv_fence after the failed commit");
    } else {
        CHECK(0, "unknown mode '%s'", mode);
    }
    CHECK_RC(kv, kv_close(&kv), KV_OK, "", (size_t)0, "kv_close");
    return t_finish();
}
