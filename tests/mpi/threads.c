/*
 * threads.c - several application threads share one handle under MPI_THREAD_MULTIPLE.
 *
 * The header says calls on one handle are serialised by the library, so TEST_THREADS (default 4)
 * threads per rank put their own keys and read back, concurrently; the main thread fences; then
 * every thread reads keys of every rank and thread concurrently (remote gets from several threads
 * at once); then the threads delete some keys concurrently, and after another fence everything is
 * read again. Each phase ends with a kv_fence on the main thread. Last, the threads keep reading
 * while the main thread calls kv_fence 20 times (collectives beside local calls on one handle). Collective calls stay on
 * the main thread. Skipped (passes) if MPI does not provide MPI_THREAD_MULTIPLE.
 */
//@case 2
//@case 4
//@case 3 FTKV_REPLICAS=3
//@case 3 FTKV_CONSISTENCY=sequential
//@case 4 FTKV_PROGRESS=inline TEST_THREADS=6
#include "common.h"

#include <pthread.h>

#define NPER 120
#define MAXT 16

static kv_store *kv;
static int nthreads;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static long thread_failures[MAXT];
static int stop_readers; /* under report_lock */

typedef struct {
    int tid;
    int phase;
} targ_t;

static size_t key_of(int r, int t, int i, char *key) { return (size_t)sprintf(key, "t/%d/%d/%d", r, t, i); }
static size_t len_of(int r, int t, int i) { return (size_t)(t_tag((uint64_t)r, (uint64_t)t, (uint64_t)i, 1) % 3000); }
static uint64_t tag_of(int r, int t, int i) { return t_tag((uint64_t)r, (uint64_t)t, (uint64_t)i, 2); }

/* Thread-safe check: the shared reporter in common.h is not thread-safe. */
static int tcheck(int tid, int ok, const char *what, const char *key, int rc)
{
    if (ok) return 1;
    thread_failures[tid]++;
    pthread_mutex_lock(&report_lock);
    if (thread_failures[tid] <= 10)
        fprintf(stderr, "[threads rank %d thread %d] FAIL %s: key '%s': rc %d (%s); kv_errmsg: '%s'\n",
                t_rank, tid, what, key, rc, t_strerror(rc), t_errmsg(kv));
    pthread_mutex_unlock(&report_lock);
    return 0;
}

static int check_value(int tid, const char *key, size_t klen, const unsigned char *exp, size_t elen,
                       unsigned char *buf, int expect_missing)
{
    size_t got = 12345;
    memset(buf, T_GUARD_BYTE, elen + T_GUARD);
    int rc = kv_get(kv, key, klen, buf, elen, &got);
    if (expect_missing)
        return tcheck(tid, rc == KV_ENOTFOUND && got == 0, "get of deleted key", key, rc);
    if (!tcheck(tid, rc == KV_OK, "kv_get", key, rc)) return 0;
    return tcheck(tid, got == elen && memcmp(buf, exp, elen) == 0 && t_guard_ok(buf + elen, T_GUARD),
                  "value differs", key, rc);
}

static void *worker(void *p)
{
    targ_t *a = (targ_t *)p;
    int tid = a->tid;
    unsigned char *val = malloc(4096), *buf = malloc(4096 + T_GUARD);
    char key[64];
    if (!val || !buf) {
        tcheck(tid, 0, "malloc", "", 0);
        return NULL;
    }
    if (a->phase == 0) { /* put my keys, read-your-writes */
        for (int i = 0; i < NPER; i++) {
            size_t klen = key_of(t_rank, tid, i, key), vlen = len_of(t_rank, tid, i);
            t_fill(val, vlen, tag_of(t_rank, tid, i));
            int rc = kv_put(kv, key, klen, val, vlen);
            if (tcheck(tid, rc == KV_OK, "kv_put", key, rc)) check_value(tid, key, klen, val, vlen, buf, 0);
        }
    } else if (a->phase == 1) { /* read everyone's keys, concurrently */
        for (int d = 0; d < t_size; d++) {
            int r = (t_rank + d + tid) % t_size;
            for (int t = 0; t < nthreads; t++)
                for (int i = tid; i < NPER; i += 3) {
                    size_t klen = key_of(r, t, i, key), vlen = len_of(r, t, i);
                    t_fill(val, vlen, tag_of(r, t, i));
                    check_value(tid, key, klen, val, vlen, buf, 0);
                }
        }
    } else if (a->phase == 2) { /* delete some of mine, concurrently; read-your-deletes */
        for (int i = 0; i < NPER; i += 4) {
            size_t klen = key_of(t_rank, tid, i, key);
            int rc = kv_del(kv, key, klen);
            if (tcheck(tid, rc == KV_OK, "kv_del", key, rc)) check_value(tid, key, klen, val, 0, buf, 1);
        }
    } else if (a->phase == 4) { /* read stable keys while the main thread fences */
        int r = (t_rank + 1 + tid) % t_size;
        long rounds = 0;
        for (;;) {
            pthread_mutex_lock(&report_lock);
            int stop = stop_readers;
            pthread_mutex_unlock(&report_lock);
            if (stop && rounds > 0) break;
            for (int t = 0; t < nthreads; t++)
                for (int i = 1 + (int)(rounds % 4); i < NPER; i += 8) {
                    if (i % 4 == 0) continue; /* deleted */
                    size_t klen = key_of(r, t, i, key), vlen = len_of(r, t, i);
                    t_fill(val, vlen, tag_of(r, t, i));
                    check_value(tid, key, klen, val, vlen, buf, 0);
                }
            rounds++;
        }
    } else { /* after the deletes */
        int r = (t_rank + 1 + tid) % t_size;
        for (int t = 0; t < nthreads; t++)
            for (int i = 0; i < NPER; i++) {
                size_t klen = key_of(r, t, i, key), vlen = len_of(r, t, i);
                t_fill(val, vlen, tag_of(r, t, i));
                check_value(tid, key, klen, val, vlen, buf, i % 4 == 0);
            }
    }
    free(val);
    free(buf);
    return NULL;
}

static void run_phase(int phase)
{
    int fences = phase == 4 ? 20 : 0;
    pthread_t th[MAXT];
    targ_t args[MAXT];
    for (int t = 0; t < nthreads; t++) {
        args[t].tid = t;
        args[t].phase = phase;
        if (pthread_create(&th[t], NULL, worker, &args[t]) != 0) {
            CHECK(0, "pthread_create failed");
            nthreads = t;
            break;
        }
    }
    /* Phase 4: collective calls on this thread while the others read. */
    for (int f = 0; f < fences; f++) {
        int rc = kv_fence(kv);
        CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence (concurrent with reads)");
    }
    pthread_mutex_lock(&report_lock);
    stop_readers = 1;
    pthread_mutex_unlock(&report_lock);
    for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
    int rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "threads");
    if (t_level < MPI_THREAD_MULTIPLE) {
        if (t_rank == 0) printf("[threads] SKIP: MPI_THREAD_MULTIPLE not provided\n");
        return t_finish();
    }
    nthreads = (int)t_env_long("TEST_THREADS", 4);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > MAXT) nthreads = MAXT;
    int rc = kv_open(MPI_COMM_WORLD, "threads", MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, "threads", 7, "kv_open") || kv == NULL) return t_finish();

    t_phase("concurrent puts");
    run_phase(0);
    t_phase("concurrent gets");
    run_phase(1);
    t_phase("concurrent deletes");
    run_phase(2);
    t_phase("concurrent gets after deletes");
    run_phase(3);
    t_phase("concurrent gets during fences");
    run_phase(4);
    for (int t = 0; t < MAXT; t++) t_failures += thread_failures[t];

    uint64_t lk = STAT(kv, KV_STAT_LOCAL_KEYS);
    unsigned long long mine = lk, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    unsigned long long live = (unsigned long long)t_size * (unsigned long long)nthreads * (NPER - NPER / 4);
    CHECK(total == (unsigned long long)t_expected_replicas(t_size) * live,
          "sum of KV_STAT_LOCAL_KEYS = %llu, expected %llu", total,
          (unsigned long long)t_expected_replicas(t_size) * live);

    t_phase("close");
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    return t_finish();
}
