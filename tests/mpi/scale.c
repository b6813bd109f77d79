/*
 * scale.c - the many-rank check: what a small job costs as the rank count grows.
 *
 * Timed between two barriers: kv_open over MPI_COMM_WORLD; 3 keys per rank; kv_fence; every rank
 * reads every rank's keys (almost all remote); then the same on two stores over the two halves of
 * the job (MPI_Comm_split), opened while the first is open; every store closed. Every value is
 * checked byte for byte. Rank 0 prints the slowest rank's time of each phase, so
 * scripts/scale.sh can show where time goes as N grows (docs/scaling.md).
 * It also prints the messages and bytes each rank's store sent in each phase of the whole-job
 * store (mean over ranks and the busiest rank), from kv_stat.
 */
//@case 8
//@case 8 TEST_THREAD_LEVEL=single
//@case 16 timeout=180
#include "common.h"

#define KEYS_PER_RANK 3

enum { P_OPEN, P_PUT_FENCE, P_GET_ALL, P_HALVES, P_CLOSE, P_COUNT };
static const char *phase_names[P_COUNT] = {"open", "put+fence", "get all", "halves", "close"};

/* Messages and bytes this rank's whole-job store sent in each phase (KV_STAT_MESSAGES_SENT and
 * KV_STAT_BYTES_SENT: requests, replies, batches; not the MPI collectives inside kv_open/kv_fence). */
static double sent[P_COUNT][2];

static void count_sent(kv_store *kv, int phase, int begin)
{
    uint64_t m = 0, b = 0;
    if (kv == NULL || kv_stat(kv, KV_STAT_MESSAGES_SENT, &m) != KV_OK || kv_stat(kv, KV_STAT_BYTES_SENT, &b) != KV_OK) return;
    sent[phase][0] += begin ? -(double)m : (double)m;
    sent[phase][1] += begin ? -(double)b : (double)b;
}

static void make_key(char *key, size_t cap, const char *store, int rank, int k)
{
    snprintf(key, cap, "%s/%d/%d", store, rank, k);
}

/* Puts this rank's keys, fences, reads every member's keys and checks them. */
static void fill_and_read(kv_store *kv, MPI_Comm comm, const char *store, double *t_put, double *t_get, int counted)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    char key[64];
    unsigned char value[48], got[48 + T_GUARD];
    if (counted) count_sent(kv, P_PUT_FENCE, 1);
    double t0 = MPI_Wtime();
    for (int k = 0; k < KEYS_PER_RANK; k++) {
        make_key(key, sizeof key, store, rank, k);
        t_fill(value, sizeof value, (uint64_t)rank * 16 + (uint64_t)k);
        CHECK_RC(kv, kv_put(kv, key, strlen(key), value, sizeof value), KV_OK, key, strlen(key), "put");
    }
    int rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, NULL, 0, "fence");
    double t1 = MPI_Wtime();
    if (counted) { count_sent(kv, P_PUT_FENCE, 0); count_sent(kv, P_GET_ALL, 1); }
    double remote = 0;  /* gets of keys this rank holds no replica of: each sends a request */
    for (int r = 0; r < size; r++) {
        for (int k = 0; k < KEYS_PER_RANK; k++) {
            make_key(key, sizeof key, store, r, k);
            t_fill(value, sizeof value, (uint64_t)r * 16 + (uint64_t)k);
            size_t len = 0;
            int holders[8], n = 0, mine = 0;
            if (kv_locate(kv, key, strlen(key), holders, 8, &n) == KV_OK)
                for (int i = 0; i < n && i < 8; i++) mine |= holders[i] == rank;
            remote += !mine;
            memset(got, T_GUARD_BYTE, sizeof got);
            rc = kv_get(kv, key, strlen(key), got, sizeof value, &len);
            if (CHECK_RC(kv, rc, KV_OK, key, strlen(key), "get")) {
                CHECK(len == sizeof value && memcmp(got, value, sizeof value) == 0,
                      "key '%s': wrong value (%zu bytes)", key, len);
                CHECK(got[sizeof value] == T_GUARD_BYTE, "key '%s': kv_get wrote past the value", key);
            }
        }
    }
    *t_put += t1 - t0;
    *t_get += MPI_Wtime() - t1;
    if (counted) {
        count_sent(kv, P_GET_ALL, 0);
        CHECK(sent[P_GET_ALL][0] >= remote, "KV_STAT_MESSAGES_SENT grew by %.0f over %.0f remote gets", sent[P_GET_ALL][0], remote);
    }
}

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "scale");
    double t[P_COUNT] = {0};
    kv_store *kv = NULL, *half = NULL;
    MPI_Comm halves;
    MPI_Comm_split(MPI_COMM_WORLD, t_rank < t_size / 2, t_rank, &halves);

    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime(), t0 = start;
    int rc = kv_open(MPI_COMM_WORLD, "scale", MPI_INFO_NULL, &kv);
    count_sent(kv, P_OPEN, 0);
    t[P_OPEN] += MPI_Wtime() - t0;
    if (!CHECK_RC(kv, rc, KV_OK, NULL, 0, "open")) return t_finish();
    fill_and_read(kv, MPI_COMM_WORLD, "all", &t[P_PUT_FENCE], &t[P_GET_ALL], 1);

    t0 = MPI_Wtime();
    rc = kv_open(halves, "scale-half", MPI_INFO_NULL, &half);
    if (CHECK_RC(half, rc, KV_OK, NULL, 0, "open a half")) {
        double unused_put = 0, unused_get = 0;
        fill_and_read(half, halves, t_rank < t_size / 2 ? "low" : "high", &unused_put, &unused_get, 0);
        CHECK_RC(half, kv_close(&half), KV_OK, NULL, 0, "close a half");
    }
    t[P_HALVES] += MPI_Wtime() - t0;

    t0 = MPI_Wtime();
    CHECK_RC(kv, kv_close(&kv), KV_OK, NULL, 0, "close");
    t[P_CLOSE] += MPI_Wtime() - t0;
    MPI_Barrier(MPI_COMM_WORLD);
    double total = MPI_Wtime() - start;

    double worst[P_COUNT];
    MPI_Reduce(t, worst, P_COUNT, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (t_rank == 0) {
        printf("[scale] %d ranks: %.3f s between the barriers; slowest rank per phase:", t_size, total);
        for (int p = 0; p < P_COUNT; p++) printf(" %s %.3f s%s", phase_names[p], worst[p], p + 1 < P_COUNT ? "," : "\n");
        fflush(stdout);
    }
    double most[P_COUNT][2], all[P_COUNT][2];
    MPI_Reduce(sent, most, 2 * P_COUNT, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(sent, all, 2 * P_COUNT, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (t_rank == 0) {
        printf("[scale] %d ranks: the store's messages sent per rank (mean, busiest rank):", t_size);
        const int shown[] = {P_OPEN, P_PUT_FENCE, P_GET_ALL};
        for (int i = 0; i < 3; i++) {
            int p = shown[i];
            printf(" %s %.1f/%.0f msgs %.0f/%.0f B%s", phase_names[p], all[p][0] / t_size, most[p][0],
                   all[p][1] / t_size, most[p][1], i < 2 ? "," : "");
        }
        printf(" (%d gets per rank)\n", KEYS_PER_RANK * t_size);
        fflush(stdout);
    }
    MPI_Comm_free(&halves);
    return t_finish();
}
