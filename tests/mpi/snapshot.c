/*
 * snapshot.c - a fence interval is a snapshot: between two fences, a get returns the state as of
 * the last fence this rank completed, plus this rank's own later writes.
 *
 * Every round, each rank rewrites all its keys (a new value, or a delete for a third of them,
 * changing with the round) and fences; then it reads every key of every rank and checks it holds
 * exactly that round's state. Ranks are deliberately skewed: a different rank each round sleeps
 * before reading, so faster ranks are already inside the next round's fence, shipping writes
 * that overwrite or delete the very keys the slow rank is reading. Those writes must stay
 * invisible to it until it completes that fence. Between the puts and the fence each rank also
 * checks its own writes are visible to itself (read-your-writes) over older state.
 */
//@case 4
//@case 8
//@case 4 FTKV_REPLICAS=1
//@case 4 FTKV_REPLICAS=3
//@case 4 TEST_THREAD_LEVEL=single
//@case 8 FTKV_PROGRESS=inline
#include "common.h"

#define NKEYS 60
#define MAXLEN 300

static size_t key_of(int r, int i, char *key) { return (size_t)sprintf(key, "snap/%d/%d", r, i); }

/* Key i of any rank is deleted in round `round` when this holds. */
static int deleted_in(int i, int round) { return (i + round) % 3 == 0; }

static size_t value_of(int r, int i, int round, unsigned char *buf)
{
    size_t len = 1 + (size_t)(t_tag((uint64_t)r, (uint64_t)i, (uint64_t)round, 3) % MAXLEN);
    t_fill(buf, len, t_tag((uint64_t)r, (uint64_t)i, (uint64_t)round, 4));
    return len;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "snapshot");
    int rounds = (int)t_env_long("TEST_ROUNDS", 12);
    kv_store *kv = NULL;
    kv = t_open("snapshot");
    if (kv == NULL) return t_finish();

    unsigned char val[MAXLEN], scratch[MAXLEN + T_GUARD];
    char key[64];
    long stale = 0;
    for (int round = 1; round <= rounds; round++) {
        t_phase("write");
        for (int i = 0; i < NKEYS; i++) {
            size_t klen = key_of(t_rank, i, key);
            if (deleted_in(i, round)) {
                CHECK_RC(kv, kv_del(kv, key, klen), KV_OK, key, klen, "kv_del");
                VERIFY(kv, key, klen, NULL, 0, scratch); /* read-your-deletes */
            } else {
                size_t vlen = value_of(t_rank, i, round, val);
                CHECK_RC(kv, kv_put(kv, key, klen, val, vlen), KV_OK, key, klen, "kv_put");
                VERIFY(kv, key, klen, val, vlen, scratch); /* read-your-writes */
            }
        }
        t_phase("fence");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        /* Skew: this round's slow rank (and every third rank on odd rounds) sleeps while the
         * others read and move on into the next round's fence. */
        if (round % t_size == t_rank || (round % 2 == 1 && t_rank % 3 == 2)) t_sleep_us(60000);
        t_phase("read");
        for (int d = 0; d < t_size; d++) {
            int r = (t_rank + d) % t_size;
            for (int i = 0; i < NKEYS; i++) {
                size_t klen = key_of(r, i, key);
                long before = t_failures;
                if (deleted_in(i, round)) {
                    VERIFY(kv, key, klen, NULL, 0, scratch);
                } else {
                    size_t vlen = value_of(r, i, round, val);
                    VERIFY(kv, key, klen, val, vlen, scratch);
                }
                if (t_failures != before) stale++;
            }
        }
    }
    if (stale > 0) fprintf(stderr, "[snapshot rank %d] %ld reads did not match their round's state\n", t_rank, stale);
    t_phase("close");
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
