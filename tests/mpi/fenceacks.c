/*
 * fenceacks.c - right after kv_fence returns, before any call that could wait for another rank,
 * every rank already holds its replica copies of every key written before the fence.
 *
 * Each round every rank writes new keys (and deletes some of the previous round's), then fences.
 * Immediately after, each rank checks KV_STAT_LOCAL_KEYS and KV_STAT_LOCAL_BYTES against what
 * kv_locate assigns it (computed before the fence), and reads every key it holds a copy of: such a
 * kv_get is answered from its own copy, so this checks the bytes that arrived, not a remote
 * answer. A fence that returned before its replicas acknowledged would fail here. Nobody writes
 * again until every rank has checked (a second fence), so the counts are exact.
 */
//@case 2
//@case 2 FTKV_REPLICAS=1
//@case 4
//@case 4 FTKV_REPLICAS=3 TEST_THREAD_LEVEL=single
//@case 8 FTKV_TEST_BATCH_BYTES=500
#include "common.h"

#define PER 80
#define MAXLEN 600

static size_t key_of(int r, int round, int i, char *key) { return (size_t)sprintf(key, "fa/%d/%d/%d", r, round, i); }
static size_t value_of(int r, int round, int i, unsigned char *buf)
{
    size_t len = (size_t)(t_tag((uint64_t)r, (uint64_t)round, (uint64_t)i, 5) % MAXLEN);
    t_fill(buf, len, t_tag((uint64_t)r, (uint64_t)round, (uint64_t)i, 6));
    return len;
}
/* Key i of round `round` is deleted in round + 1 when this holds. */
static int dies_next_round(int i) { return i % 4 == 1; }

static int holds(kv_store *kv, const char *key, size_t klen)
{
    int ranks[8], n = 0;
    if (kv_locate(kv, key, klen, ranks, 8, &n) != KV_OK) return 0;
    for (int j = 0; j < n && j < 8; j++)
        if (ranks[j] == t_rank) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "fenceacks");
    int rounds = (int)t_env_long("TEST_ROUNDS", 6);
    kv_store *kv = NULL;
    kv = t_open("fenceacks");
    if (kv == NULL) return t_finish();

    unsigned char val[MAXLEN], scratch[MAXLEN + T_GUARD];
    char key[64];
    for (int round = 0; round < rounds; round++) {
        t_phase("write");
        for (int i = 0; i < PER; i++) {
            size_t klen = key_of(t_rank, round, i, key), vlen = value_of(t_rank, round, i, val);
            CHECK_RC(kv, kv_put(kv, key, klen, val, vlen), KV_OK, key, klen, "kv_put");
            if (round > 0 && dies_next_round(i)) {
                klen = key_of(t_rank, round - 1, i, key);
                CHECK_RC(kv, kv_del(kv, key, klen), KV_OK, key, klen, "kv_del");
            }
        }
        /* What this rank must hold once the fence returns: every live key of every rank and
         * round that placement gives it. */
        unsigned long long want_keys = 0, want_bytes = 0;
        for (int r = 0; r < t_size; r++)
            for (int rd = 0; rd <= round; rd++)
                for (int i = 0; i < PER; i++) {
                    if (rd < round && dies_next_round(i)) continue;
                    size_t klen = key_of(r, rd, i, key);
                    if (!holds(kv, key, klen)) continue;
                    want_keys++;
                    want_bytes += klen + value_of(r, rd, i, val);
                }
        t_phase("fence");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        /* Nothing but local calls from here until every rank has checked. */
        t_phase("replica copies right after the fence");
        unsigned long long keys = STAT(kv, KV_STAT_LOCAL_KEYS), bytes = STAT(kv, KV_STAT_LOCAL_BYTES);
        CHECK(keys == want_keys, "round %d: KV_STAT_LOCAL_KEYS = %llu right after the fence, expected %llu", round,
              keys, want_keys);
        CHECK(bytes == want_bytes, "round %d: KV_STAT_LOCAL_BYTES = %llu right after the fence, expected %llu", round,
              bytes, want_bytes);
        for (int r = 0; r < t_size; r++)
            for (int i = 0; i < PER; i++) {
                size_t klen = key_of(r, round, i, key);
                if (!holds(kv, key, klen)) continue;
                size_t vlen = value_of(r, round, i, val);
                VERIFY(kv, key, klen, val, vlen, scratch);
                if (round > 0 && dies_next_round(i)) {
                    klen = key_of(r, round - 1, i, key);
                    if (holds(kv, key, klen)) VERIFY(kv, key, klen, NULL, 0, scratch);
                }
            }
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence after checking");
    }
    t_phase("close");
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
