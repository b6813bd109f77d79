/*
 * stall.c - a sender that stops in the middle of a large message does not stall the receiver's
 * local calls: no lock is held while a message is still arriving.
 *
 * Rank 1 puts a TEST_MB (default 64) MiB value whose only copy belongs to rank 0 and fences; a
 * thread of rank 1 stops the whole process with SIGSTOP a little later (several delays are tried,
 * so the stop lands while the message is on its way; TCP is used so that the sender has to push
 * every fragment itself). Meanwhile a thread of rank 0 keeps reading a key rank 0 holds itself and
 * records the slowest of those local gets. Rank 0 resumes rank 1 with SIGCONT after 2.5 s. The
 * slowest local get must stay under 1 s (a lock held across the arrival makes it ~2.5 s; applying
 * the value, which does hold the lock, takes well under that), and the fence then completes with
 * the value byte for byte.
 *
 * The stop is a pause, not a failure: the suspicion time (FTKV_SUSPECT_AFTER) is set above it, or
 * the others would exclude the stopped rank (tests/kill/online.c tests that).
 */
//@case 2 FTKV_REPLICAS=1 FTKV_TIMEOUT=20 FTKV_SUSPECT_AFTER=10 OMPI_MCA_btl=self,tcp timeout=200
#include "common.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static kv_store *kv;
static volatile int reading;
static double worst;
static long reads;
static char local_key[64];
static size_t local_klen;

static void *reader(void *arg)
{
    (void)arg;
    unsigned char buf[16];
    while (reading) {
        size_t len;
        double t0 = t_now();
        int rc = kv_get(kv, local_key, local_klen, buf, sizeof buf, &len);
        double dt = t_now() - t0;
        if (rc != KV_OK) CHECK_RC(kv, rc, KV_OK, local_key, local_klen, "local get during the stall");
        if (dt > worst) worst = dt;
        reads++;
        t_sleep_us(1000);
    }
    return NULL;
}

static void *resume(void *arg)
{
    t_sleep_us(2500000);
    kill((pid_t)*(int *)arg, SIGCONT);
    return NULL;
}

static long stop_after_us;
static void *stopper(void *arg)
{
    (void)arg;
    t_sleep_us(stop_after_us);
    raise(SIGSTOP);
    return NULL;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "stall");
    if (t_level != MPI_THREAD_MULTIPLE || t_size != 2) {
        if (t_rank == 0) printf("[stall] SKIP: needs 2 ranks and MPI_THREAD_MULTIPLE\n");
        return t_finish();
    }
    size_t big = (size_t)t_env_long("TEST_MB", 64) << 20;
    int pid = (int)getpid(), peer_pid = 0;
    MPI_Sendrecv(&pid, 1, MPI_INT, 1 - t_rank, 0, &peer_pid, 1, MPI_INT, 1 - t_rank, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    kv = t_open("stall");
    if (kv == NULL) return t_finish();
    int rc;
    local_klen = t_key_on(kv, 0, "mine", local_key);
    if (t_rank == 0) CHECK_RC(kv, kv_put(kv, local_key, local_klen, "x", 1), KV_OK, local_key, local_klen, "kv_put");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");

    unsigned char *value = t_xmalloc(big), *back = NULL;
    t_fill(value, big, 42);
    const long delays_ms[] = {10, 30, 45, 60, 75, 100, 160, 250};
    const int attempts = (int)(sizeof delays_ms / sizeof delays_ms[0]);
    for (int attempt = 0; attempt < attempts; attempt++) {
        char key[64];
        char tag[16];
        sprintf(tag, "big%d", attempt);
        size_t klen = t_key_on(kv, 0, tag, key);
        t_phase("fence while the sender stops");
        if (t_rank == 1) {
            CHECK_RC(kv, kv_put(kv, key, klen, value, big), KV_OK, key, klen, "kv_put of the large value");
            stop_after_us = delays_ms[attempt] * 1000;
            pthread_t th;
            pthread_create(&th, NULL, stopper, NULL);
            CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence (stopped and resumed)");
            pthread_join(th, NULL);
        } else {
            worst = 0;
            reads = 0;
            reading = 1;
            pthread_t th;
            pthread_create(&th, NULL, reader, NULL);
            /* Resume the sender after 2.5 s, from a thread: the fence below waits for it. */
            double t0 = t_now();
            pthread_t resumer;
            pthread_create(&resumer, NULL, resume, &peer_pid);
            CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence while the sender is stopped");
            reading = 0;
            pthread_join(th, NULL);
            pthread_join(resumer, NULL);
            printf("[stall] attempt %d (stop after %ld ms): %ld local gets during %.1f s, slowest %.3f s\n", attempt,
                   delays_ms[attempt], reads, t_now() - t0, worst);
            CHECK(worst < 1.0, "attempt %d: a local get took %.2f s while a message was arriving", attempt, worst);
            if (!back) back = t_xmalloc(big);
            size_t len = 0;
            rc = kv_get(kv, key, klen, back, big, &len);
            CHECK_RC(kv, rc, KV_OK, key, klen, "get of the large value");
            CHECK(len == big && memcmp(back, value, big) == 0, "the large value came back different");
        }
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    }
    free(value);
    free(back);
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
