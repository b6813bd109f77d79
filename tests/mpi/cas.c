/*
 * cas.c - kv_cas, compare-and-swap: its contract, and linearizability under contention.
 *
 *  - put-if-absent: every rank races to create one key with expected == NULL; exactly one
 *    swaps, and every rank then reads the winner's value (keys with each rank as primary);
 *  - a wrong expected value swaps nothing and changes nothing; an empty value is a value, not
 *    its absence; take (desired == NULL) deletes; a key written by kv_put + fence is swapped from;
 *  - a shared counter incremented by every rank with get + kv_cas loops: the successful swaps
 *    add up to exactly the final value, and a rank reads at least its own new value right after
 *    its swap returned;
 *  - a swap is on every replica when it returns: rank 0 swaps K, then swaps a flag F; a rank
 *    that holds K as a replica (not its primary) waits to see F, then reads K from its own copy
 *    (no fence in between) and finds that value or a later one; without a progress thread, a
 *    swap does not return while a replica stays out of the library;
 *  - bad arguments: KV_EINVAL (NULL swapped, NULL value with a length, empty key, values over
 *    the limit together), KV_EMISUSE for a NULL handle.
 * Runs with fence and sequential consistency, 1 to 3 replicas, and inline progress.
 */
//@case 1
//@case 2
//@case 4 FTKV_REPLICAS=2
//@case 4 FTKV_REPLICAS=3 FTKV_CONSISTENCY=sequential
//@case 3 FTKV_REPLICAS=2 FTKV_PROGRESS=inline
//@case 3 FTKV_REPLICAS=2 TEST_THREAD_LEVEL=single
#include "common.h"

static int cas(kv_store *kv, const char *key, const char *expected, const char *desired, int *swapped)
{
    return kv_cas(kv, key, strlen(key), expected, expected ? strlen(expected) : 0, desired,
                  desired ? strlen(desired) : 0, swapped);
}

/* The key's value as a NUL-terminated string ("" and rc KV_ENOTFOUND when absent). */
static int read_text(kv_store *kv, const char *key, char *out, size_t cap)
{
    size_t len = 0;
    int rc = kv_get(kv, key, strlen(key), out, cap - 1, &len);
    out[rc == KV_OK ? len : 0] = '\0';
    return rc;
}

static long read_counter(kv_store *kv, const char *key)
{
    char text[32];
    int rc = read_text(kv, key, text, sizeof text);
    if (rc == KV_ENOTFOUND) return 0;
    CHECK_RC(kv, rc, KV_OK, key, strlen(key), "kv_get of the counter");
    return atol(text);
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "cas");
    kv_store *kv = t_open("cas");
    if (kv == NULL) return t_finish();
    int rc, swapped;
    char key[64], text[64], mine[32];
    sprintf(mine, "rank %d", t_rank);

    t_phase("put-if-absent: one winner per key");
    for (int owner = 0; owner < t_size; owner++) {
        size_t klen = t_key_on(kv, owner, "once", key);
        swapped = -1;
        rc = cas(kv, key, NULL, mine, &swapped);
        CHECK_RC(kv, rc, KV_OK, key, klen, "racing put-if-absent");
        CHECK(swapped == 0 || swapped == 1, "swapped is %d", swapped);
        int winners = 0, winner = swapped == 1 ? t_rank : -1, who = -1;
        /* A fence ends the phase: without a progress thread, requests are served in library calls. */
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        MPI_Allreduce(&swapped, &winners, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Allreduce(&winner, &who, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        CHECK(winners == 1, "%d ranks won the put-if-absent of '%s' (primary %d)", winners, key, owner);
        char want[32];
        sprintf(want, "rank %d", who);
        CHECK_RC(kv, read_text(kv, key, text, sizeof text), KV_OK, key, klen, "kv_get of the created key");
        CHECK(strcmp(text, want) == 0, "'%s' reads '%s', the winner wrote '%s'", key, text, want);
        rc = cas(kv, key, NULL, mine, &swapped);
        CHECK(rc == KV_OK && swapped == 0, "a second put-if-absent of '%s' gave rc %d swapped %d", key, rc, swapped);
    }
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");

    t_phase("mismatch, empty values, take, put then swap");
    {
        sprintf(key, "own/%d", t_rank);
        size_t klen = strlen(key);
        rc = cas(kv, key, "", "x", &swapped); /* expects an empty value: the key has none */
        CHECK(rc == KV_OK && swapped == 0, "an empty expected value matched an absent key (rc %d swapped %d)", rc, swapped);
        CHECK_RC(kv, read_text(kv, key, text, sizeof text), KV_ENOTFOUND, key, klen, "absent after a failed swap");
        rc = cas(kv, key, NULL, "", &swapped); /* creates an empty value */
        CHECK(rc == KV_OK && swapped == 1, "creating an empty value: rc %d swapped %d", rc, swapped);
        size_t len = 99;
        CHECK_RC(kv, kv_get(kv, key, klen, text, sizeof text, &len), KV_OK, key, klen, "kv_get of an empty value");
        CHECK(len == 0, "the empty value reads %zu bytes", len);
        rc = cas(kv, key, NULL, "y", &swapped);
        CHECK(rc == KV_OK && swapped == 0, "an empty value was taken for an absent one (rc %d swapped %d)", rc, swapped);
        rc = cas(kv, key, "wrong", "z", &swapped);
        CHECK(rc == KV_OK && swapped == 0, "a wrong expected value swapped (rc %d swapped %d)", rc, swapped);
        rc = cas(kv, key, "", "one", &swapped);
        CHECK(rc == KV_OK && swapped == 1, "empty -> one: rc %d swapped %d", rc, swapped);
        CHECK_RC(kv, read_text(kv, key, text, sizeof text), KV_OK, key, klen, "kv_get after a swap");
        CHECK(strcmp(text, "one") == 0, "'%s' reads '%s' after swapping in 'one'", key, text);
        rc = cas(kv, key, "on", NULL, &swapped); /* a prefix is not the value */
        CHECK(rc == KV_OK && swapped == 0, "a prefix of the value matched (rc %d swapped %d)", rc, swapped);
        rc = cas(kv, key, "one", NULL, &swapped); /* take */
        CHECK(rc == KV_OK && swapped == 1, "take: rc %d swapped %d", rc, swapped);
        CHECK_RC(kv, read_text(kv, key, text, sizeof text), KV_ENOTFOUND, key, klen, "kv_get after take");

        sprintf(key, "put/%d", t_rank);
        klen = strlen(key);
        CHECK_RC(kv, kv_put(kv, key, klen, "seed", 4), KV_OK, key, klen, "kv_put");
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        rc = cas(kv, key, "seed", "grown", &swapped);
        CHECK(rc == KV_OK && swapped == 1, "swapping from a put value: rc %d swapped %d (%s)", rc, swapped, t_errmsg(kv));
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        /* Every rank reads every rank's key. */
        for (int r = 0; r < t_size; r++) {
            sprintf(key, "put/%d", r);
            CHECK_RC(kv, read_text(kv, key, text, sizeof text), KV_OK, key, strlen(key), "kv_get of a swapped key");
            CHECK(strcmp(text, "grown") == 0, "'%s' reads '%s', not 'grown'", key, text);
        }
    }

    t_phase("a shared counter: no increment lost");
    {
        const long per_rank = t_env_long("TEST_INCREMENTS", 200);
        long successes = 0, failures = 0;
        for (long i = 0; i < per_rank; i++) {
            for (;;) {
                long seen = read_counter(kv, "counter");
                char old[32], next[32];
                sprintf(old, "%ld", seen);
                sprintf(next, "%ld", seen + 1);
                rc = cas(kv, "counter", seen == 0 ? NULL : old, next, &swapped);
                if (!CHECK_RC(kv, rc, KV_OK, "counter", 7, "kv_cas increment")) break;
                if (swapped) {
                    successes++;
                    long now = read_counter(kv, "counter");
                    CHECK(now >= seen + 1, "read %ld right after swapping the counter to %ld", now, seen + 1);
                    break;
                }
                failures++;
            }
        }
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
        long total = 0;
        MPI_Allreduce(&successes, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        long final = read_counter(kv, "counter");
        CHECK(final == per_rank * t_size, "the counter reads %ld after %ld increments per rank", final, per_rank);
        CHECK(total == final, "%ld swaps succeeded but the counter reads %ld", total, final);
        if (t_rank == 0) printf("[cas] counter: %ld increments, %ld lost races on rank 0\n", final, failures);
    }

    t_phase("a swap is on every replica when it returns");
    if (t_size >= 2 && t_expected_replicas(t_size) >= 2) {
        /* K: a key that rank 1 holds as a replica, not as primary (and rank 0 neither). */
        size_t klen = 0;
        int ranks[8], n = 0;
        for (int i = 0; i < 100000 && klen == 0; i++) {
            sprintf(key, "replicated/%d", i);
            CHECK_RC(kv, kv_locate(kv, key, strlen(key), ranks, 8, &n), KV_OK, key, strlen(key), "kv_locate");
            int holds1 = 0, holds0 = 0;
            for (int j = 1; j < n; j++) holds1 |= ranks[j] == 1;
            for (int j = 0; j < n; j++) holds0 |= ranks[j] == 0;
            if (holds1 && ranks[0] != 1 && !holds0) klen = strlen(key);
        }
        if (klen == 0 && t_size == 2) { /* two ranks: every key is on both; take one rank 0 is primary of */
            klen = t_key_on(kv, 0, "replicated", key);
        }
        CHECK(klen > 0, "no key held by rank 1 as a non-primary replica");
        for (int round = 1; round <= 20 && klen > 0; round++) {
            char flag[32], value[32], prev[32];
            sprintf(flag, "flag/%d", round);
            sprintf(value, "v%d", round);
            sprintf(prev, "v%d", round - 1);
            if (t_rank == 0) {
                rc = cas(kv, key, round == 1 ? NULL : prev, value, &swapped);
                CHECK(rc == KV_OK && swapped == 1, "round %d: swap of K: rc %d swapped %d", round, rc, swapped);
                rc = cas(kv, flag, NULL, "go", &swapped);
                CHECK(rc == KV_OK && swapped == 1, "round %d: swap of the flag: rc %d swapped %d", round, rc, swapped);
            } else if (t_rank == 1) {
                double give_up = t_now() + 30;
                while (read_text(kv, flag, text, sizeof text) == KV_ENOTFOUND && t_now() < give_up) t_sleep_us(50);
                CHECK(strcmp(text, "go") == 0, "round %d: the flag never came", round);
                CHECK_RC(kv, read_text(kv, key, text, sizeof text), KV_OK, key, klen, "local read of K");
                /* Rank 0 may have swapped K again since (it does not wait for rank 1). */
                CHECK(text[0] == 'v' && atoi(text + 1) >= round,
                      "round %d: rank 1's own copy of K reads '%s' after the flag, older than '%s'", round, text, value);
            }
        }
        CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");

        /* Without a progress thread a replica applies nothing while it is outside the library:
         * rank 1 stays out for 0.3 s, so rank 0's swap of K must not return before rank 1 is
         * back (both clocks are CLOCK_MONOTONIC of one machine). */
        if (STAT(kv, KV_STAT_PROGRESS_THREAD) == 0 && klen > 0) {
            double back = 0, returned = 0;
            MPI_Barrier(MPI_COMM_WORLD);
            if (t_rank == 1) {
                t_sleep_us(300000);
                back = t_now();
            } else if (t_rank == 0) {
                rc = cas(kv, key, "v20", "late", &swapped);
                CHECK(rc == KV_OK && swapped == 1, "swap while a replica is away: rc %d swapped %d", rc, swapped);
                returned = t_now();
            }
            CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
            double times[2] = {returned, back}, latest[2];
            MPI_Allreduce(times, latest, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            CHECK(latest[0] >= latest[1], "rank 0's swap returned %.3f s before its replica rank 1 was back in the library",
                  latest[1] - latest[0]);
        }
    }

    t_phase("bad arguments");
    {
        rc = kv_cas(kv, "k", 1, NULL, 0, "v", 1, NULL);
        CHECK_RC(kv, rc, KV_EINVAL, "k", 1, "swapped == NULL");
        rc = kv_cas(kv, "k", 1, NULL, 3, "v", 1, &swapped);
        CHECK_RC(kv, rc, KV_EINVAL, "k", 1, "expected NULL with a length");
        rc = kv_cas(kv, "k", 1, NULL, 0, NULL, 2, &swapped);
        CHECK_RC(kv, rc, KV_EINVAL, "k", 1, "desired NULL with a length");
        rc = kv_cas(kv, "k", 0, NULL, 0, "v", 1, &swapped);
        CHECK_RC(kv, rc, KV_EINVAL, "k", 0, "empty key");
        rc = kv_cas(kv, NULL, 1, NULL, 0, "v", 1, &swapped);
        CHECK_RC(kv, rc, KV_EINVAL, "", 0, "NULL key");
        /* Lengths are checked before any byte is read: these buffers are one byte long. */
        rc = kv_cas(kv, "k", 1, "e", KV_MAX_VALUE_LEN, "d", 1, &swapped);
        CHECK_RC(kv, rc, KV_EINVAL, "k", 1, "expected + desired over KV_MAX_VALUE_LEN");
        rc = kv_cas(kv, "k", 1, "e", 1, "d", KV_MAX_VALUE_LEN + 1, &swapped);
        CHECK_RC(kv, rc, KV_EINVAL, "k", 1, "desired over KV_MAX_VALUE_LEN");
        rc = kv_cas(NULL, "k", 1, NULL, 0, "v", 1, &swapped);
        CHECK_RC(NULL, rc, KV_EMISUSE, "k", 1, "NULL handle");
        CHECK_RC(kv, read_text(kv, "k", text, sizeof text), KV_ENOTFOUND, "k", 1, "nothing written by refused calls");
    }

    CHECK_RC(kv, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
