/*
 * errmsg.c - kv_errmsg belongs to the thread that failed: under MPI_THREAD_MULTIPLE, threads that
 * fail calls on one handle at the same time each read back the message of their own failure
 * (each thread's failing key length appears in its message), never another thread's. Also with
 * a NULL handle (failures without a handle). Skipped (passes) without MPI_THREAD_MULTIPLE.
 */
//@case 1
//@case 2 FTKV_PROGRESS=inline
#include "common.h"

#include <pthread.h>

#define NT 4
#define ITERS 20000

static kv_store *kv;
static long wrong[NT];

static void *worker(void *arg)
{
    int tid = (int)(long)arg;
    /* Each thread's oversized key has its own length, which the message names. */
    size_t len = KV_MAX_KEY_LEN + 1 + (size_t)tid * 1000;
    char expect[64];
    sprintf(expect, "%zu", len);
    for (int i = 0; i < ITERS; i++) {
        int rc = kv_put(kv, "k", len, "v", 1);
        const char *m = kv_errmsg(kv);
        if (rc != KV_EINVAL || m == NULL || strstr(m, expect) == NULL) {
            if (wrong[tid]++ < 3)
                fprintf(stderr, "[errmsg rank %d thread %d] rc %d, message '%s' does not name my key length %s\n",
                        t_rank, tid, rc, m ? m : "(null)", expect);
        }
        rc = kv_put(NULL, "k", 1, "v", 1);
        m = kv_errmsg(NULL);
        if (rc != KV_EMISUSE || m == NULL || strstr(m, "NULL") == NULL) {
            if (wrong[tid]++ < 3)
                fprintf(stderr, "[errmsg rank %d thread %d] NULL handle: rc %d, message '%s'\n", t_rank, tid, rc,
                        m ? m : "(null)");
        }
        /* A success does not clear the message of my last failure... */
        if (kv_put(kv, "ok", 2, "v", 1) != KV_OK) wrong[tid]++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "errmsg");
    if (!t_have_multiple()) return t_finish();
    kv = t_open("errmsg");
    if (kv == NULL) return t_finish();
    pthread_t th[NT];
    for (long t = 0; t < NT; t++) pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < NT; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < NT; t++) CHECK(wrong[t] == 0, "thread %d read %ld messages that were not its own", t, wrong[t]);
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
