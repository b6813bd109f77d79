/*
 * tombstones.c - memory of a put+delete workload stays bounded: a tombstone is reclaimed once every
 * replica has applied the delete.
 *
 * Every rank puts and then deletes TEST_PAIRS (default 400,000) unique keys with 100-byte values,
 * fencing every 20,000 pairs. Afterwards no key is live (KV_STAT_LOCAL_KEYS == 0 on every rank,
 * a sample of keys is KV_ENOTFOUND everywhere) and the process's resident memory grew by less
 * than TEST_MAX_GROWTH_MB (default 16; unreclaimed tombstones grew it by 57-68 MB per rank with
 * 2 or 3 copies). The growth is printed.
 */
//@case 2 timeout=300
//@case 3 FTKV_REPLICAS=3 TEST_PAIRS=200000 timeout=300
#include "common.h"

static long rss_kb(void) { return t_proc_kb("/proc/self/status", "VmRSS:"); }

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "tombstones");
    long pairs = t_env_long("TEST_PAIRS", 400000), per_fence = 20000;
    long max_growth_mb = t_env_long("TEST_MAX_GROWTH_MB", 16);
    kv_store *kv = NULL;
    kv = t_open("tombstones");
    if (kv == NULL) return t_finish();

    unsigned char val[100], scratch[100 + T_GUARD];
    t_fill(val, sizeof val, 3);
    char key[64];
    /* A first round, so the store's steady-state allocations exist before the baseline. */
    for (long n = 0; n < per_fence; n++) {
        size_t klen = (size_t)sprintf(key, "warm/%d/%ld", t_rank, n);
        kv_put(kv, key, klen, val, sizeof val);
        kv_del(kv, key, klen);
    }
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    long before = rss_kb();
    t_phase("put+delete soak");
    for (long n = 0; n < pairs; n++) {
        size_t klen = (size_t)sprintf(key, "pd/%d/%ld", t_rank, n);
        CHECK_RC(kv, kv_put(kv, key, klen, val, sizeof val), KV_OK, key, klen, "kv_put");
        CHECK_RC(kv, kv_del(kv, key, klen), KV_OK, key, klen, "kv_del");
        if ((n + 1) % per_fence == 0) CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    }
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    long after = rss_kb();
    long growth_mb = (after - before) / 1024;
    printf("[tombstones rank %d] %ld put+delete pairs: RSS %ld MB -> %ld MB (growth %ld MB)\n", t_rank, pairs,
           before / 1024, after / 1024, growth_mb);
    CHECK(growth_mb < max_growth_mb, "resident memory grew by %ld MB over %ld put+delete pairs (limit %ld MB)",
          growth_mb, pairs, max_growth_mb);
    CHECK(STAT(kv, KV_STAT_LOCAL_KEYS) == 0, "live keys remain after deleting every key");
    t_phase("every key reads as deleted");
    for (int r = 0; r < t_size; r++)
        for (long n = 0; n < pairs; n += 997) {
            size_t klen = (size_t)sprintf(key, "pd/%d/%ld", r, n);
            VERIFY(kv, key, klen, NULL, 0, scratch);
        }
    /* A key deleted and put again after reclamation is live with the new value. */
    size_t klen = (size_t)sprintf(key, "pd/%d/%ld", t_rank, 5L);
    CHECK_RC(kv, kv_put(kv, key, klen, val, sizeof val), KV_OK, key, klen, "kv_put after reclamation");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    for (int r = 0; r < t_size; r++) {
        klen = (size_t)sprintf(key, "pd/%d/%ld", r, 5L);
        VERIFY(kv, key, klen, val, sizeof val, scratch);
    }
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
