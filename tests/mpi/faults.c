/*
 * faults.c - a peer that misbehaves gets a code, never a trap, a hang or a broken handle.
 *
 * Rank 1 opens with a test-only fault switched on (FTKV_TEST_FAULT, set by this program on rank 1
 * only; see docs/configuration.md), chosen by TEST_FAULT:
 *   apply-fail        rank 1 refuses every write: fences of the ranks that ship to it return
 *                     KV_EREMOTE on those ranks, every rank completes the fence, and the store
 *                     keeps working (gets, further fences, close) on every rank.
 *   stale-epoch       rank 1 speaks from another membership epoch: its gets are refused
 *                     (KV_EREMOTE), its replies are dropped and counted (KV_STAT_DROPPED_MESSAGES)
 *                     so gets it owns end in KV_ETIMEDOUT, not with its answer; the other ranks
 *                     keep working with each other.
 *   truncate-replies  rank 1's replies lose their last byte: a get of a value it owns returns
 *                     KV_EREMOTE ("malformed"), and the store keeps working.
 * Every case also checks that kv_open on an intercommunicator returns KV_EINVAL on every rank.
 */
//@case 3 TEST_FAULT=apply-fail FTKV_REPLICAS=2
//@case 3 TEST_FAULT=stale-epoch FTKV_REPLICAS=1 FTKV_TIMEOUT=2 timeout=60 TEST_THREAD_LEVEL=multiple
//@case 3 TEST_FAULT=truncate-replies FTKV_REPLICAS=1
//@case 3 TEST_FAULT=apply-fail FTKV_REPLICAS=2 TEST_THREAD_LEVEL=single
#include "common.h"

static void intercommunicator(void)
{
    t_phase("kv_open on an intercommunicator");
    MPI_Comm half, inter;
    int color = t_rank % 2;
    MPI_Comm_split(MPI_COMM_WORLD, color, t_rank, &half);
    /* Leaders: rank 0 of each half = world ranks 0 and 1. */
    MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, color == 0 ? 1 : 0, 99, &inter);
    kv_store *kv = (kv_store *)0x1;
    int rc = kv_open(inter, "inter", MPI_INFO_NULL, &kv);
    CHECK_RC(NULL, rc, KV_EINVAL, "", 0, "kv_open on an intercommunicator");
    CHECK(kv == NULL, "kv_open failed but left a handle");
    if (rc == KV_OK) kv_close(&kv);
    CHECK(strstr(kv_errmsg(NULL), "intercommunicator") != NULL, "message does not say why: '%s'", kv_errmsg(NULL));
    MPI_Comm_free(&inter);
    MPI_Comm_free(&half);
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "faults");
    const char *fault = getenv("TEST_FAULT") ? getenv("TEST_FAULT") : "apply-fail";
    intercommunicator();
    if (t_rank == 1) setenv("FTKV_TEST_FAULT", fault, 1);
    kv_store *kv = NULL;
    kv = t_open("faults");
    if (kv == NULL) return t_finish();
    int rc;
    unsetenv("FTKV_TEST_FAULT");

    unsigned char val[100], scratch[100 + T_GUARD];
    t_fill(val, sizeof val, 77);
    char key[64], k0[64];
    size_t k0len = t_key_on(kv, 0, "r0", k0); /* held by rank 0 (and, with r=2, one more) */

    if (strcmp(fault, "apply-fail") == 0) {
        t_phase("fence with a replica refusing writes");
        for (int i = 0; i < 30; i++) {
            size_t klen = (size_t)sprintf(key, "af/%d/%d", t_rank, i);
            CHECK_RC(kv, kv_put(kv, key, klen, val, sizeof val), KV_OK, key, klen, "kv_put");
        }
        rc = kv_fence(kv);
        int refused = rc == KV_EREMOTE, any = 0;
        CHECK(rc == KV_OK || rc == KV_EREMOTE, "kv_fence returned %d (%s): %s", rc, t_strerror(rc), t_errmsg(kv));
        if (rc == KV_EREMOTE) CHECK(strstr(t_errmsg(kv), "rank 1") != NULL, "message does not name rank 1: %s", t_errmsg(kv));
        MPI_Allreduce(&refused, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        CHECK(any, "no rank saw rank 1's refusal");
        t_phase("the store keeps working");
        if (t_rank == 0) CHECK_RC(kv, kv_put(kv, k0, k0len, val, sizeof val), KV_OK, k0, k0len, "kv_put");
        rc = kv_fence(kv);
        CHECK(rc == KV_OK || rc == KV_EREMOTE, "second kv_fence returned %d (%s)", rc, t_strerror(rc));
        if (t_rank != 1) VERIFY(kv, k0, k0len, val, sizeof val, scratch);
    } else if (strcmp(fault, "stale-epoch") == 0) {
        t_phase("gets to and from a rank in another epoch");
        char k1[64], k2[64];
        size_t k1len = t_key_on(kv, 1, "r1", k1), k2len = t_key_on(kv, 2, "r2", k2);
        if (t_rank == 0) {
            size_t len;
            rc = kv_get(kv, k1, k1len, scratch, sizeof scratch, &len);
            /* Its reply is dropped; with failure detection (a progress thread) its heartbeats are
             * dropped too, so it is announced as failed before the deadline. */
            CHECK(rc == KV_ETIMEDOUT || rc == KV_EPROCFAILED, "get from the stale rank (its reply must be dropped): %d (%s)",
                  rc, t_strerror(rc));
            CHECK(STAT(kv, KV_STAT_DROPPED_MESSAGES) >= 1, "the stale reply was not counted as dropped");
            rc = kv_get(kv, k2, k2len, scratch, sizeof scratch, &len);
            CHECK_RC(kv, rc, KV_ENOTFOUND, k2, k2len, "get from a healthy rank afterwards");
        } else if (t_rank == 1) {
            size_t len;
            rc = kv_get(kv, k2, k2len, scratch, sizeof scratch, &len);
            CHECK_RC(kv, rc, KV_EREMOTE, k2, k2len, "get by the stale rank");
            CHECK(strstr(t_errmsg(kv), "epoch") != NULL, "message does not say why: %s", t_errmsg(kv));
        } else {
            size_t len;
            rc = kv_get(kv, k0, k0len, scratch, sizeof scratch, &len);
            CHECK_RC(kv, rc, KV_ENOTFOUND, k0, k0len, "get between healthy ranks");
        }
        /* The others wait for rank 0's timed-out get in the application's barrier (their
         * progress threads serve meanwhile), not in a fence that would time out first. */
        MPI_Barrier(MPI_COMM_WORLD);
        /* Rank 1's get was answered (refused) by rank 2 before rank 1 entered the barrier. */
        if (t_rank == 2) CHECK(STAT(kv, KV_STAT_DROPPED_MESSAGES) >= 1, "the stale request was not counted");
    } else {
        t_phase("a truncated get reply");
        char k1[64];
        size_t k1len = t_key_on(kv, 1, "r1", k1);
        if (t_rank == 0) CHECK_RC(kv, kv_put(kv, k1, k1len, val, sizeof val), KV_OK, k1, k1len, "kv_put");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        if (t_rank != 1) {
            size_t len;
            rc = kv_get(kv, k1, k1len, scratch, sizeof scratch, &len);
            CHECK_RC(kv, rc, KV_EREMOTE, k1, k1len, "get of a value whose reply is truncated");
            CHECK(strstr(t_errmsg(kv), "malformed") != NULL, "message does not say why: %s", t_errmsg(kv));
        } else {
            VERIFY(kv, k1, k1len, val, sizeof val, scratch); /* the owner reads its own copy */
        }
        t_phase("the store keeps working");
        if (t_rank == 2) CHECK_RC(kv, kv_put(kv, k0, k0len, val, sizeof val), KV_OK, k0, k0len, "kv_put");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        if (t_rank != 1) VERIFY(kv, k0, k0len, val, sizeof val, scratch);
    }
    /* Collective close: every rank must get through it. */
    t_phase("close");
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence before close");
    CHECK_RC(NULL, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
