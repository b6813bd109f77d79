/*
 * closerace.c - kv_close on one thread while other threads of the same rank are inside calls on
 * the handle (MPI_THREAD_MULTIPLE): those calls return KV_OK or KV_EMISUSE, never crash or touch
 * the freed communicator, and a remote kv_get left waiting on a rank that already closed ends with
 * KV_EMISUSE when the store is closed under it.
 *
 * Each rank runs a getter thread that reads keys whose primary is the next rank (remote gets, one
 * replica) in a loop; the main thread closes the store while the getter is waiting for a rank that
 * has closed already. Then another thread calls kv_errmsg/kv_stat on the dead handle. Repeated
 * TEST_CYCLES times. Skipped (passes) without MPI_THREAD_MULTIPLE.
 */
//@case 2 FTKV_PROGRESS=inline FTKV_REPLICAS=1
//@case 3 FTKV_PROGRESS=inline FTKV_REPLICAS=1
//@case 2 FTKV_REPLICAS=1
#include "common.h"

#include <pthread.h>

static kv_store *shared_kv; /* the handle value the getter uses (a copy: close NULLs the caller's) */
static char remote_key[64];
static size_t remote_klen;
static volatile int getter_started;
static long getter_ok, getter_misuse, getter_other;
static int getter_last_other;

static void *getter(void *arg)
{
    (void)arg;
    unsigned char buf[64];
    for (;;) {
        size_t len = 0;
        int rc = kv_get(shared_kv, remote_key, remote_klen, buf, sizeof buf, &len);
        getter_started = 1;
        if (rc == KV_OK) getter_ok++;
        else if (rc == KV_EMISUSE) { getter_misuse++; break; }
        else { getter_other++; getter_last_other = rc; break; }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "closerace");
    if (!t_have_multiple()) return t_finish();
    int cycles = (int)t_env_long("TEST_CYCLES", 10);
    for (int c = 0; c < cycles; c++) {
        kv_store *kv = NULL;
        int rc = kv_open(MPI_COMM_WORLD, "closerace", MPI_INFO_NULL, &kv);
        if (!CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_open")) break;
        char tag[32];
        sprintf(tag, "cr%d", c);
        remote_klen = t_key_on(kv, (t_rank + 1) % t_size, tag, remote_key);
        char mine[64];
        size_t mlen = t_key_on(kv, t_rank, tag, mine);
        CHECK_RC(kv, kv_put(kv, mine, mlen, "v", 1), KV_OK, mine, mlen, "kv_put");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        shared_kv = kv;
        getter_started = 0;
        getter_ok = getter_misuse = getter_other = 0;
        pthread_t th;
        pthread_create(&th, NULL, getter, NULL);
        while (!getter_started) t_sleep_us(100);
        /* Ranks close at different moments, so some getters wait on a rank that closed already. */
        t_sleep_us(20000L * (t_rank + 1));
        rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close with a getter thread running");
        CHECK(kv == NULL, "kv_close did not set the handle to NULL");
        pthread_join(th, NULL);
        CHECK(getter_other == 0, "cycle %d: the getter thread's call returned %d (%s), expected KV_OK or KV_EMISUSE",
              c, getter_last_other, t_strerror(getter_last_other));
        CHECK(getter_misuse == 1, "cycle %d: the getter did not end with KV_EMISUSE", c);
        CHECK(getter_ok > 0, "cycle %d: the getter never read the remote key", c);
        /* The dead handle stays harmless. */
        uint64_t v;
        CHECK(kv_stat(shared_kv, KV_STAT_RANK, &v) == KV_EMISUSE, "kv_stat on a closed handle");
        CHECK(kv_errmsg(shared_kv) != NULL, "kv_errmsg on a closed handle returned NULL");
        MPI_Barrier(MPI_COMM_WORLD);
    }
    return t_finish();
}
