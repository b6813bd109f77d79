/*
 * stress.c - rounds of random puts / overwrites / deletes from every rank on an overlapping key
 * space, checked against a model every rank computes for itself.
 *
 * The ops of every rank in every round are a deterministic function of (TEST_SEED, round, rank, j),
 * so each rank can replay everybody's ops: within a fence interval the value of a key is that of
 * the highest rank that wrote it, and that rank's last op on it (kv_put's documented rule). After
 * each kv_fence every rank verifies a sample of keys byte for byte (all keys after the last round),
 * and the sum of KV_STAT_LOCAL_KEYS over ranks must equal replicas * live keys. During a round,
 * read-your-writes is checked for keys no higher rank writes in that round.
 * With FTKV_CONSISTENCY=sequential, writes to a key are ordered as they really happen, so ranks take
 * turns within a round (rank ascending, a kv_fence between turns) and the same model applies.
 *
 * TEST_ROUNDS (default 20), TEST_OPS ops per rank per round (default 60), TEST_SEED.
 */
//@case 4
//@case 3 FTKV_REPLICAS=3
//@case 4 TEST_THREAD_LEVEL=single TEST_ROUNDS=10
//@case 4 FTKV_CONSISTENCY=sequential TEST_ROUNDS=6 TEST_OPS=30
//@case 8 TEST_ROUNDS=6 TEST_OPS=30
//@case 4 FTKV_PROGRESS=inline TEST_ROUNDS=10
#include "common.h"

#define NKEYS 256
#define NHOT 4
#define SAMPLE 64
#define MAXLEN (4096 + 30000)

typedef struct {
    int key;
    int del;
    size_t len;
    uint64_t vtag;
} op_t;

typedef struct {
    int present;
    size_t len;
    uint64_t vtag;
} slot_t;

static uint64_t seed;
static int nops_default;

static int nops(int round, int rank)
{
    return ((round + rank) % 7 == 3) ? 0 : nops_default; /* some ranks sit some rounds out */
}

static op_t gen_op(int round, int rank, int j)
{
    uint64_t h = t_tag(seed, (uint64_t)round, (uint64_t)rank, (uint64_t)j);
    op_t o;
    if (j == 0) o.key = round % NHOT; /* a hot key every active rank writes this round */
    else if (j >= 3 && j == nops(round, rank) - 1) o.key = gen_op(round, rank, j - 2).key; /* again */
    else o.key = (int)(h % NKEYS);
    o.del = ((h >> 16) % 10) < 2;
    if (((h >> 24) % 16) == 0) o.len = 4096 + (size_t)((h >> 32) % 30000);
    else o.len = (size_t)((h >> 32) % 400);
    o.vtag = t_tag(seed + 1, (uint64_t)round, (uint64_t)rank, (uint64_t)j);
    return o;
}

static size_t key_name(int k, char *buf) { return (size_t)sprintf(buf, "stress/%03d", k); }

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "stress");
    seed = (uint64_t)t_env_long("TEST_SEED", 20240611);
    int rounds = (int)t_env_long("TEST_ROUNDS", 20);
    nops_default = (int)t_env_long("TEST_OPS", 60);
    int R = t_expected_replicas(t_size);
    int sequential = t_env_is("FTKV_CONSISTENCY", "sequential");

    slot_t model[NKEYS];
    memset(model, 0, sizeof model);
    int top_writer[NKEYS];
    unsigned char *val = t_xmalloc(MAXLEN);
    unsigned char *scratch = t_xmalloc(MAXLEN + T_GUARD);
    char key[64];

    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "stress", MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, "stress", 6, "kv_open") || kv == NULL) return t_finish();

    char phase[64];
    for (int round = 0; round < rounds; round++) {
        snprintf(phase, sizeof phase, "round %d ops", round);
        t_phase(phase);
        /* Which rank writes each key last in this round (highest rank wins). */
        for (int k = 0; k < NKEYS; k++) top_writer[k] = -1;
        for (int r = 0; r < t_size; r++)
            for (int j = 0; j < nops(round, r); j++) top_writer[gen_op(round, r, j).key] = r;

        /* My ops, with read-your-writes where no higher rank competes. Sequential: in turns. */
        for (int turn = 0; turn < (sequential ? t_size : 1); turn++) {
          if (sequential && turn != t_rank) {
            CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence between turns");
            continue;
          }
          for (int j = 0; j < nops(round, t_rank); j++) {
            op_t o = gen_op(round, t_rank, j);
            size_t klen = key_name(o.key, key);
            if (o.del) {
                rc = kv_del(kv, key, klen);
                CHECK_RC(kv, rc, KV_OK, key, klen, "kv_del");
            } else {
                t_fill(val, o.len, o.vtag);
                rc = kv_put(kv, key, klen, val, o.len);
                CHECK_RC(kv, rc, KV_OK, key, klen, "kv_put");
            }
            if (top_writer[o.key] == t_rank && (j % 3 == 0 || o.len > 4096)) {
                if (!o.del) t_fill(val, o.len, o.vtag);
                VERIFY(kv, key, klen, o.del ? NULL : val, o.len, scratch);
            }
          }
          if (sequential) CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence after my turn");
        }

        /* Everyone's ops, in the order that decides the winner: rank ascending, then op order. */
        for (int r = 0; r < t_size; r++)
            for (int j = 0; j < nops(round, r); j++) {
                op_t o = gen_op(round, r, j);
                model[o.key].present = !o.del;
                model[o.key].len = o.del ? 0 : o.len;
                model[o.key].vtag = o.vtag;
            }

        rc = kv_fence(kv);
        CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
        if (!sequential) {
            uint64_t pending = STAT(kv, KV_STAT_PENDING_OPS);
            CHECK(pending == 0, "KV_STAT_PENDING_OPS = %llu after fence", (unsigned long long)pending);
        }

        snprintf(phase, sizeof phase, "round %d verify", round);
        t_phase(phase);
        unsigned long long live = 0, mine = STAT(kv, KV_STAT_LOCAL_KEYS), total = 0;
        for (int k = 0; k < NKEYS; k++) live += (unsigned long long)model[k].present;
        MPI_Allreduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
        CHECK(total == (unsigned long long)R * live,
              "sum of KV_STAT_LOCAL_KEYS over ranks = %llu, expected %d replicas * %llu live keys", total,
              R, live);

        int last = (round == rounds - 1);
        int n = last ? NKEYS : SAMPLE;
        for (int s = 0; s < n; s++) {
            int k = last ? (s + t_rank * 17) % NKEYS
                         : (int)(t_tag(seed + 2, (uint64_t)round, (uint64_t)t_rank, (uint64_t)s) % NKEYS);
            if (s < NHOT) k = s; /* hot keys always */
            size_t klen = key_name(k, key);
            if (model[k].present) {
                t_fill(val, model[k].len, model[k].vtag);
                VERIFY(kv, key, klen, val, model[k].len, scratch);
            } else {
                VERIFY(kv, key, klen, NULL, 0, scratch);
            }
        }
        /* Next round's ops start only after everyone has verified (served inside the fence). */
        rc = kv_fence(kv);
        CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
        /* Stop early (all ranks together) once the test is hopeless. */
        long f = t_failures, fmax = 0;
        MPI_Allreduce(&f, &fmax, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
        if (fmax > T_MAX_REPORTS) break;
    }

    t_phase("close");
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    free(val);
    free(scratch);
    return t_finish();
}
