/*
 * seqorder.c - sequential consistency follows real order: a put that returned KV_OK is never
 * superseded by a write that happened before it, whatever the writers' ranks.
 *
 * For every ordered pair of ranks (a, b), a != b, and keys whose primary is each rank in turn:
 * rank a puts K, all ranks synchronise, then rank b puts K; b must read its own value at once, and
 * after the next synchronisation every rank must read b's value (non-replicas from the primary,
 * replicas from their own copy). With a progress thread the synchronisation is the application's
 * own MPI_Barrier (no fence in between, so nothing but the order of the puts decides); without
 * one it is kv_fence, inside which requests are served. Then all ranks put
 * one shared key at the same moment: afterwards every rank reads the same value (replicas agree),
 * and it is one of the values written.
 */
//@case 3 FTKV_CONSISTENCY=sequential
//@case 4 FTKV_CONSISTENCY=sequential FTKV_REPLICAS=3
//@case 4 FTKV_CONSISTENCY=sequential FTKV_PROGRESS=inline
#include "common.h"

static size_t value_of(int writer, int round, unsigned char *buf)
{
    size_t len = 8 + (size_t)(t_tag((uint64_t)writer, (uint64_t)round, 1, 2) % 100);
    t_fill(buf, len, t_tag((uint64_t)writer, (uint64_t)round, 3, 4));
    return len;
}

static int threaded;

static void sync_ranks(kv_store *kv)
{
    if (threaded) MPI_Barrier(MPI_COMM_WORLD);
    else CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "seqorder");
    kv_store *kv = NULL;
    kv = t_open("seqorder");
    if (kv == NULL) return t_finish();
    int rc;

    threaded = STAT(kv, KV_STAT_PROGRESS_THREAD) == 1;
    unsigned char val[128], scratch[128 + T_GUARD];
    char key[64], tag[32];
    int round = 0;
    t_phase("ordered pairs of writers");
    for (int owner = 0; owner < t_size; owner++) {
        for (int a = 0; a < t_size; a++) {
            for (int b = 0; b < t_size; b++) {
                if (a == b) continue;
                round++;
                sprintf(tag, "seq%d", round);
                size_t klen = t_key_on(kv, owner, tag, key);
                if (t_rank == a) {
                    size_t vlen = value_of(a, round, val);
                    CHECK_RC(kv, kv_put(kv, key, klen, val, vlen), KV_OK, key, klen, "first put");
                }
                sync_ranks(kv);
                size_t vlen = value_of(b, round, val);
                if (t_rank == b) {
                    CHECK_RC(kv, kv_put(kv, key, klen, val, vlen), KV_OK, key, klen, "second put");
                    if (!VERIFY(kv, key, klen, val, vlen, scratch))
                        fprintf(stderr, "[seqorder rank %d] after rank %d's put, my later put of '%s' (primary %d) "
                                "is not what I read back\n", t_rank, a, key, owner);
                }
                sync_ranks(kv);
                VERIFY(kv, key, klen, val, vlen, scratch);
            }
        }
    }

    t_phase("concurrent puts to one key converge");
    for (int owner = 0; owner < t_size; owner++) {
        round++;
        sprintf(tag, "race%d", round);
        size_t klen = t_key_on(kv, owner, tag, key);
        size_t vlen = value_of(t_rank, round, val);
        CHECK_RC(kv, kv_put(kv, key, klen, val, vlen), KV_OK, key, klen, "racing put");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        size_t got = 0;
        memset(scratch, 0, sizeof scratch);
        rc = kv_get(kv, key, klen, scratch, 128, &got);
        CHECK_RC(kv, rc, KV_OK, key, klen, "get after racing puts");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence"); /* others may still be reading from me */
        uint64_t h = t_tag(got, 0, 0, 0);
        for (size_t i = 0; i < got; i++) h = t_mix(h ^ scratch[i]);
        uint64_t hmin = 0, hmax = 0;
        MPI_Allreduce(&h, &hmin, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&h, &hmax, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
        CHECK(hmin == hmax, "ranks read different values of '%s' after concurrent puts: replicas diverge", key);
        int match = 0;
        for (int w = 0; w < t_size; w++) {
            size_t wl = value_of(w, round, val);
            if (wl == got && memcmp(val, scratch, wl) == 0) match = 1;
        }
        CHECK(match, "'%s' holds none of the values written", key);
    }

    t_phase("close");
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
