/*
 * placement.c - kv_locate and replica placement with one machine playing several nodes.
 *
 * Each rank sets FTKV_NODE itself before kv_open (the library reads it at kv_open):
 * TEST_NODE_MAP=mod2 (default) -> node rank % 2; div2 -> node rank / 2; none -> leave it alone.
 * Checks: KV_STAT_SIZE/RANK/NODES/REPLICAS; kv_locate gives REPLICAS distinct ranks in [0,size),
 * spread over min(REPLICAS, nodes) distinct nodes; every rank computes the same placement
 * (checksum over 1000+ keys compared across ranks); kv_locate's maxranks contract; after
 * puts + fence each rank holds exactly the keys kv_locate assigns it (KV_STAT_LOCAL_KEYS and
 * KV_STAT_LOCAL_BYTES), so the sum over ranks is replicas * distinct keys; deletes drop out.
 */
//@case 4 FTKV_REPLICAS=2
//@case 8 FTKV_REPLICAS=2 TEST_NODE_MAP=div2
//@case 4 FTKV_REPLICAS=3
//@case 4 FTKV_REPLICAS=1
//@case 4 TEST_NODE_MAP=div2
//@case 3 FTKV_REPLICAS=2 TEST_NODE_MAP=none
#include "common.h"

#define NLOCATE 1000
#define NDIST 600    /* distinct keys written by one rank each */
#define NSHARED 20   /* keys written by every rank (higher rank wins) */
#define MAXR 16

static int node_of(int rank)
{
    if (t_env_is("TEST_NODE_MAP", "div2")) return rank / 2;
    return rank % 2;
}

/* Keys used for the placement checksum: ASCII, binary (with NUL bytes) and long keys. */
static size_t locate_key(int i, unsigned char *key)
{
    if (i % 10 == 7) { /* binary key with embedded NULs */
        size_t len = 1 + (size_t)(i % 13);
        t_fill(key, len, (uint64_t)i);
        key[0] = 0;
        return len;
    }
    if (i % 50 == 3) { /* long key */
        size_t len = 1000 + (size_t)i;
        t_fill(key, len, (uint64_t)i * 7);
        return len;
    }
    return (size_t)sprintf((char *)key, "p/%d", i);
}

static int locate_checked(kv_store *kv, const void *key, size_t klen, int *ranks, int expect_n,
                          const int *nodes, int nnodes)
{
    int n = -1;
    for (int j = 0; j < MAXR; j++) ranks[j] = -99;
    int rc = kv_locate(kv, key, klen, ranks, MAXR, &n);
    if (!CHECK_RC(kv, rc, KV_OK, key, klen, "kv_locate")) return 0;
    if (n != expect_n) {
        CHECK(0, "kv_locate '%s': %d ranks, expected %d", t_keystr(key, klen), n, expect_n);
        return 0;
    }
    int ok = 1, used_nodes = 0;
    int seen_node[64] = {0};
    for (int j = 0; j < n; j++) {
        if (ranks[j] < 0 || ranks[j] >= t_size) {
            CHECK(0, "kv_locate '%s': rank %d out of range", t_keystr(key, klen), ranks[j]);
            ok = 0;
            continue;
        }
        for (int k = 0; k < j; k++)
            if (ranks[k] == ranks[j]) {
                CHECK(0, "kv_locate '%s': rank %d listed twice", t_keystr(key, klen), ranks[j]);
                ok = 0;
            }
        int nd = nodes[ranks[j]];
        if (nd >= 0 && nd < 64 && !seen_node[nd]) {
            seen_node[nd] = 1;
            used_nodes++;
        }
    }
    for (int j = n; j < MAXR; j++)
        if (ranks[j] != -99) {
            CHECK(0, "kv_locate '%s': wrote ranks[%d] beyond the count %d", t_keystr(key, klen), j, n);
            ok = 0;
            break;
        }
    int want_nodes = n < nnodes ? n : nnodes;
    if (ok && used_nodes != want_nodes) {
        char list[256];
        size_t o = 0;
        for (int j = 0; j < n && o < 200; j++)
            o += (size_t)snprintf(list + o, sizeof list - o, " %d(node %d)", ranks[j], nodes[ranks[j]]);
        CHECK(0, "kv_locate '%s': replicas on %d distinct nodes, expected %d:%s", t_keystr(key, klen),
              used_nodes, want_nodes, list);
        ok = 0;
    }
    return ok;
}

static size_t dist_key(int i, char *key) { return (size_t)sprintf(key, "d/%d", i); }
static size_t shared_key(int i, char *key) { return (size_t)sprintf(key, "shared/%d", i); }
static size_t dist_len(int i) { return (size_t)(t_tag((uint64_t)i, 1, 2, 3) % 300); }
static size_t shared_len(int r, int i) { return 10 + (size_t)r * 3 + (size_t)i; }

/* Expected (keys, bytes) this rank holds after the puts, optionally after deleting i % 4 == 1. */
static void expected_local(kv_store *kv, int deleted, const int *nodes, int nnodes, int R,
                           uint64_t *keys, uint64_t *bytes)
{
    char key[64];
    int ranks[MAXR];
    *keys = 0;
    *bytes = 0;
    for (int i = 0; i < NDIST; i++) {
        if (deleted && i % 4 == 1) continue;
        size_t klen = dist_key(i, key);
        if (!locate_checked(kv, key, klen, ranks, R, nodes, nnodes)) continue;
        for (int j = 0; j < R; j++)
            if (ranks[j] == t_rank) {
                (*keys)++;
                *bytes += klen + dist_len(i);
            }
    }
    for (int i = 0; i < NSHARED; i++) {
        size_t klen = shared_key(i, key);
        if (!locate_checked(kv, key, klen, ranks, R, nodes, nnodes)) continue;
        for (int j = 0; j < R; j++)
            if (ranks[j] == t_rank) {
                (*keys)++;
                *bytes += klen + shared_len(t_size - 1, i); /* the highest rank's value won */
            }
    }
}

static void check_local_counts(kv_store *kv, int deleted, const int *nodes, int nnodes, int R)
{
    uint64_t want_keys, want_bytes;
    expected_local(kv, deleted, nodes, nnodes, R, &want_keys, &want_bytes);
    uint64_t keys = STAT(kv, KV_STAT_LOCAL_KEYS);
    uint64_t bytes = STAT(kv, KV_STAT_LOCAL_BYTES);
    CHECK(keys == want_keys, "KV_STAT_LOCAL_KEYS = %llu, but kv_locate assigns this rank %llu keys",
          (unsigned long long)keys, (unsigned long long)want_keys);
    CHECK(bytes == want_bytes,
          "KV_STAT_LOCAL_BYTES = %llu, but the keys kv_locate assigns this rank have %llu key+value bytes",
          (unsigned long long)bytes, (unsigned long long)want_bytes);
    unsigned long long mine = keys, total = 0;
    MPI_Allreduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    unsigned long long distinct = (unsigned long long)(deleted ? NDIST - NDIST / 4 : NDIST) + NSHARED;
    if (t_rank == 0)
        CHECK(total == (unsigned long long)R * distinct,
              "sum of KV_STAT_LOCAL_KEYS over ranks = %llu, expected replicas %d * distinct keys %llu",
              total, R, distinct);
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "placement");
    int map_none = t_env_is("TEST_NODE_MAP", "none");
    int mynode = map_none ? 0 : node_of(t_rank);
    if (!map_none) {
        char nodename[32];
        snprintf(nodename, sizeof nodename, "testnode-%d", mynode);
        setenv("FTKV_NODE", nodename, 1);
    }
    int *nodes = t_xmalloc(sizeof(int) * (size_t)t_size);
    MPI_Allgather(&mynode, 1, MPI_INT, nodes, 1, MPI_INT, MPI_COMM_WORLD);
    int nnodes = 0;
    for (int r = 0; r < t_size; r++) {
        int seen = 0;
        for (int q = 0; q < r; q++)
            if (nodes[q] == nodes[r]) seen = 1;
        if (!seen) nnodes++;
    }
    int R = t_expected_replicas(t_size);
    if (t_rank == 0) printf("[placement] %d nodes, expect %d replicas\n", nnodes, R);

    t_phase("open");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "placement", MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, "placement", 9, "kv_open") || kv == NULL) return t_finish();

    t_phase("stats");
    CHECK(STAT(kv, KV_STAT_RANK) == (uint64_t)t_rank, "KV_STAT_RANK wrong");
    CHECK(STAT(kv, KV_STAT_SIZE) == (uint64_t)t_size, "KV_STAT_SIZE wrong");
    uint64_t v = STAT(kv, KV_STAT_REPLICAS);
    CHECK(v == (uint64_t)R, "KV_STAT_REPLICAS = %llu, expected %d", (unsigned long long)v, R);
    v = STAT(kv, KV_STAT_NODES);
    if (map_none) /* one real machine: every rank shares one node */
        CHECK(v == 1, "KV_STAT_NODES = %llu without FTKV_NODE on one machine, expected 1",
              (unsigned long long)v);
    else
        CHECK(v == (uint64_t)nnodes, "KV_STAT_NODES = %llu, expected %d", (unsigned long long)v, nnodes);
    v = STAT(kv, KV_STAT_LOCAL_KEYS);
    CHECK(v == 0, "KV_STAT_LOCAL_KEYS = %llu in a new store", (unsigned long long)v);
    {
        /* every rank is in the same membership view */
        unsigned long long ep = STAT(kv, KV_STAT_EPOCH), lo = 0, hi = 0;
        MPI_Allreduce(&ep, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&ep, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
        CHECK(lo == hi, "KV_STAT_EPOCH differs across ranks (min %llu, max %llu)", lo, hi);
    }

    t_phase("locate");
    unsigned char *key = t_xmalloc(4096);
    int ranks[MAXR];
    uint64_t sum = 1469598103934665603ULL;
    int *primaries = calloc((size_t)t_size, sizeof(int));
    for (int i = 0; i < NLOCATE; i++) {
        size_t klen = locate_key(i, key);
        if (!locate_checked(kv, key, klen, ranks, R, nodes, nnodes)) continue;
        primaries[ranks[0]]++;
        for (int j = 0; j < R; j++) sum = t_mix(sum ^ (uint64_t)(ranks[j] + 1) ^ ((uint64_t)j << 32));
        /* The same key located twice gives the same answer. */
        int again[MAXR], n2 = 0;
        rc = kv_locate(kv, key, klen, again, MAXR, &n2);
        CHECK(rc == KV_OK && n2 == R && memcmp(again, ranks, sizeof(int) * (size_t)R) == 0,
              "kv_locate '%s' not stable between calls", t_keystr(key, klen));
    }
    uint64_t *sums = t_xmalloc(sizeof(uint64_t) * (size_t)t_size);
    MPI_Allgather(&sum, 1, MPI_UINT64_T, sums, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int r = 0; r < t_size; r++)
        CHECK(sums[r] == sum, "placement checksum of rank %d (%016llx) differs from this rank's (%016llx)",
              r, (unsigned long long)sums[r], (unsigned long long)sum);
    /* Loose balance: every rank is primary for a fair share of keys (deterministic hash). */
    if (t_rank == 0)
        for (int r = 0; r < t_size; r++)
            CHECK(primaries[r] >= NLOCATE / t_size / 3,
                  "rank %d is primary for only %d of %d keys (poor balance)", r, primaries[r], NLOCATE);

    /* maxranks smaller than the count: writes at most maxranks, reports the full count. */
    {
        int full[MAXR], part[MAXR], n = -1;
        size_t klen = locate_key(1, key);
        rc = kv_locate(kv, key, klen, full, MAXR, &n);
        CHECK_RC(kv, rc, KV_OK, key, klen, "kv_locate");
        for (int j = 0; j < MAXR; j++) part[j] = -99;
        n = -1;
        rc = kv_locate(kv, key, klen, part, 1, &n);
        if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_locate(maxranks=1)")) {
            CHECK(n == R, "kv_locate(maxranks=1): count %d, expected the full count %d", n, R);
            CHECK(part[0] == full[0], "kv_locate(maxranks=1): primary %d, expected %d", part[0], full[0]);
            for (int j = 1; j < MAXR; j++)
                CHECK(part[j] == -99, "kv_locate(maxranks=1) wrote ranks[%d]", j);
        }
        for (int j = 0; j < MAXR; j++) part[j] = -99;
        n = -1;
        rc = kv_locate(kv, key, klen, part, 0, &n);
        if (CHECK_RC(kv, rc, KV_OK, key, klen, "kv_locate(maxranks=0)")) {
            CHECK(n == R, "kv_locate(maxranks=0): count %d, expected %d", n, R);
            CHECK(part[0] == -99, "kv_locate(maxranks=0) wrote ranks[0]");
        }
    }

    t_phase("puts");
    unsigned char *val = t_xmalloc(4096);
    char ckey[64];
    for (int i = 0; i < NDIST; i++) {
        if (i % t_size != t_rank) continue;
        size_t klen = dist_key(i, ckey), vlen = dist_len(i);
        t_fill(val, vlen, (uint64_t)i);
        rc = kv_put(kv, ckey, klen, val, vlen);
        CHECK_RC(kv, rc, KV_OK, ckey, klen, "kv_put");
    }
    for (int i = 0; i < NSHARED; i++) {
        size_t klen = shared_key(i, ckey), vlen = shared_len(t_rank, i);
        t_fill(val, vlen, t_tag((uint64_t)t_rank, (uint64_t)i, 5, 5));
        rc = kv_put(kv, ckey, klen, val, vlen);
        CHECK_RC(kv, rc, KV_OK, ckey, klen, "kv_put(shared)");
    }
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");

    t_phase("local counts after puts");
    check_local_counts(kv, 0, nodes, nnodes, R);

    t_phase("read back");
    unsigned char *scratch = t_xmalloc(4096 + T_GUARD);
    for (int i = t_rank; i < NDIST; i += 3) {
        size_t klen = dist_key(i, ckey), vlen = dist_len(i);
        t_fill(val, vlen, (uint64_t)i);
        VERIFY(kv, ckey, klen, val, vlen, scratch);
    }
    for (int i = 0; i < NSHARED; i++) {
        size_t klen = shared_key(i, ckey), vlen = shared_len(t_size - 1, i);
        t_fill(val, vlen, t_tag((uint64_t)(t_size - 1), (uint64_t)i, 5, 5));
        VERIFY(kv, ckey, klen, val, vlen, scratch);
    }
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");

    t_phase("deletes");
    for (int i = 0; i < NDIST; i++) {
        if (i % 4 != 1 || (i / 4) % t_size != t_rank) continue; /* not always the writer */
        size_t klen = dist_key(i, ckey);
        rc = kv_del(kv, ckey, klen);
        CHECK_RC(kv, rc, KV_OK, ckey, klen, "kv_del");
    }
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
    t_phase("local counts after deletes");
    check_local_counts(kv, 1, nodes, nnodes, R);
    for (int i = t_rank; i < NDIST; i += 5) {
        size_t klen = dist_key(i, ckey), vlen = dist_len(i);
        t_fill(val, vlen, (uint64_t)i);
        VERIFY(kv, ckey, klen, i % 4 == 1 ? NULL : val, vlen, scratch);
    }

    t_phase("close");
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    free(key);
    free(val);
    free(scratch);
    free(sums);
    free(primaries);
    free(nodes);
    return t_finish();
}
