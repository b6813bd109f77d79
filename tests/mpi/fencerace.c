/*
 * fencerace.c - no acknowledged write is lost when it races a fence (MPI_THREAD_MULTIPLE).
 *
 * A worker thread per rank puts (and every 7th time deletes) unique keys as fast as it can while
 * the main thread calls kv_fence TEST_FENCES times. A write that returned KV_OK belongs to the
 * interval being fenced or to the next one, never to neither. After the worker stops and one more
 * fence, every rank reads every key every rank wrote, byte for byte (deleted ones KV_ENOTFOUND).
 * Skipped (passes) without MPI_THREAD_MULTIPLE.
 */
//@case 2
//@case 4 FTKV_REPLICAS=3
//@case 3 FTKV_PROGRESS=inline
#include "common.h"

#include <pthread.h>

static kv_store *kv;
static volatile int stop_worker;
static long written; /* keys the worker wrote (put or deleted), set when it stops */
static long worker_failures;

static size_t key_of(int r, long n, char *key) { return (size_t)sprintf(key, "race/%d/%ld", r, n); }
static int is_deleted(long n) { return n % 7 == 3; }
static size_t value_of(int r, long n, unsigned char *buf)
{
    size_t len = (size_t)(n % 40);
    t_fill(buf, len, t_tag((uint64_t)r, (uint64_t)n, 0, 9));
    return len;
}

static void *worker(void *arg)
{
    (void)arg;
    unsigned char val[64];
    char key[64];
    long n = 0;
    long limit = t_env_long("TEST_MAX_KEYS", 60000);
    while (!stop_worker && n < limit) {
        size_t klen = key_of(t_rank, n, key), vlen = value_of(t_rank, n, val);
        int rc = kv_put(kv, key, klen, val, vlen);
        if (rc == KV_OK && is_deleted(n)) rc = kv_del(kv, key, klen);
        if (rc != KV_OK) {
            if (worker_failures++ < 5)
                fprintf(stderr, "[fencerace rank %d] worker: write of '%s' returned %d (%s): %s\n", t_rank, key, rc,
                        t_strerror(rc), t_errmsg(kv));
            break;
        }
        n++;
    }
    written = n;
    return NULL;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "fencerace");
    if (!t_have_multiple()) return t_finish();
    int fences = (int)t_env_long("TEST_FENCES", 200);
    kv = t_open("fencerace");
    if (kv == NULL) return t_finish();

    t_phase("fences racing a writer thread");
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    for (int f = 0; f < fences; f++) CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    stop_worker = 1;
    pthread_join(th, NULL);
    CHECK(worker_failures == 0, "the worker's writes failed");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence after the worker stopped");

    long *counts = t_xmalloc(sizeof(long) * (size_t)t_size);
    MPI_Allgather(&written, 1, MPI_LONG, counts, 1, MPI_LONG, MPI_COMM_WORLD);
    if (t_rank == 0) printf("[fencerace] rank 0's worker wrote %ld keys during %d fences\n", counts[0], fences);

    t_phase("verify every key of every rank");
    unsigned char val[64], scratch[64 + T_GUARD];
    char key[64];
    long lost = 0;
    for (int d = 0; d < t_size; d++) {
        int r = (t_rank + d) % t_size;
        for (long n = 0; n < counts[r]; n++) {
            size_t klen = key_of(r, n, key);
            long before = t_failures;
            if (is_deleted(n)) {
                VERIFY(kv, key, klen, NULL, 0, scratch);
            } else {
                size_t vlen = value_of(r, n, val);
                VERIFY(kv, key, klen, val, vlen, scratch);
            }
            if (t_failures != before) lost++;
        }
    }
    if (lost > 0) fprintf(stderr, "[fencerace rank %d] %ld acknowledged writes lost or wrong\n", t_rank, lost);
    free(counts);
    t_phase("close");
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
