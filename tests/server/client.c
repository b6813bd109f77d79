/*
 * A client job of a store server (kv_connect). Usage:
 *   client ADDRESS late-close       rank 0 closes while rank 1 sleeps: KV_ETIMEDOUT, no crash after
 *   client ADDRESS churn DIR ME PARTNER ROUNDS   connect/put/close in lockstep with another job
 *   client ADDRESS write PREFIX N   every rank puts N keys PREFIX/<rank>/<i>, fences, then reads
 *                                   back the keys of the next rank of its job byte for byte
 *   client ADDRESS read PREFIX W N  every key PREFIX/<w>/<i> of a writer job of W ranks is read
 *                                   (shared among this job's ranks) and checked byte for byte
 *   client PORTFILE raw MODE        (1 rank) not a kv_connect client: connects with MPI itself and
 *                                   MODE "silent" sends no hello (and expects KV_ETIMEDOUT as the
 *                                   server's answer); "junk" says hello with the secret,
 *                                   then sends malformed requests (truncated, bad magic, lying
 *                                   lengths, unknown kind), checks the codes of those that can
 *                                   be answered, and leaves
 * Values are 1..300 bytes, a function of (prefix, writer rank, index): any loss, mix-up or
 * truncation shows. Exit status 0 only if every check held; prints one summary line per rank 0.
 */
#define _DEFAULT_SOURCE /* usleep, access */
#include <mpi.h>
#include <ftkv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdint.h>

static size_t make_value(const char *prefix, int w, int i, unsigned char *out) {
    unsigned h = 2166136261u;
    for (const char *p = prefix; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ (unsigned)w) * 16777619u;
    h = (h ^ (unsigned)i) * 16777619u;
    size_t len = 1 + h % 300;
    for (size_t j = 0; j < len; j++) out[j] = (unsigned char)(h >> (j % 24)) ^ (unsigned char)j;
    return len;
}

static int check(kv_store *kv, const char *prefix, int w, int i) {
    char key[128];
    unsigned char want[300], got[400];
    int klen = snprintf(key, sizeof key, "%s/%d/%d", prefix, w, i);
    size_t wlen = make_value(prefix, w, i, want), glen = 0;
    int rc = kv_get(kv, key, (size_t)klen, got, sizeof got, &glen);
    if (rc != KV_OK) {
        fprintf(stderr, "client: get %s: %s (%s)\n", key, kv_strerror(rc), kv_errmsg(kv));
        return 1;
    }
    if (glen != wlen || memcmp(got, want, wlen) != 0) {
        fprintf(stderr, "client: get %s: %zu bytes, expected %zu, or different bytes\n", key, glen, wlen);
        return 1;
    }
    return 0;
}

/* The client/server header (docs/client-server.md): magic "FTKC", kind, 2 reserved bytes
 * (here 3), request id, argument; little-endian, as this machine is. */
static size_t frame(unsigned char *out, unsigned kind, uint64_t id, int64_t arg, const void *body, size_t n) {
    uint32_t magic = 0x434b5446u;
    memcpy(out, &magic, 4);
    out[4] = (unsigned char)kind;
    memset(out + 5, 0, 3);
    memcpy(out + 8, &id, 8);
    memcpy(out + 16, &arg, 8);
    if (n) memcpy(out + 24, body, n);
    return 24 + n;
}

static int raw_client(const char *portfile, const char *mode) {
    char port[MPI_MAX_PORT_NAME + 1] = {0}, secret[1100] = {0};
    FILE *f = fopen(portfile, "r");
    if (!f || !fgets(port, sizeof port, f) || !fgets(secret, sizeof secret, f)) { fprintf(stderr, "raw: no port file\n"); return 1; }
    fclose(f);
    port[strcspn(port, "\n")] = 0;
    secret[strcspn(secret, "\n")] = 0;
    MPI_Comm inter;
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    if (MPI_Comm_connect(port, MPI_INFO_NULL, 0, MPI_COMM_SELF, &inter) != MPI_SUCCESS) { fprintf(stderr, "raw: connect failed\n"); return 1; }
    MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
    int servers = 0;
    MPI_Comm_remote_size(inter, &servers);
    unsigned char buf[512];
    if (strcmp(mode, "junk") == 0) {
        size_t n = frame(buf, 1, 0, 1, secret, strlen(secret));
        MPI_Send(buf, (int)n, MPI_BYTE, 0, 7103, inter);
        MPI_Status st;
        MPI_Recv(buf, sizeof buf, MPI_BYTE, 0, 7104, inter, &st);
        int64_t code;
        memcpy(&code, buf + 16, 8);
        printf("raw: welcome code %lld\n", (long long)code);
        /* The server accepted on its rank 0 alone; accepted jobs widen the connection to every
         * server rank (merge, then MPI_Intercomm_create with tag 7105), as kv_connect does. */
        MPI_Comm merged, full;
        MPI_Intercomm_merge(inter, 1, &merged);
        MPI_Intercomm_create(MPI_COMM_SELF, 0, merged, 0, 7105, &full);
        MPI_Comm_free(&merged);
        MPI_Comm_free(&inter);
        inter = full;
        MPI_Comm_set_errhandler(inter, MPI_ERRORS_RETURN);
        MPI_Comm_remote_size(inter, &servers);
        for (int s = 0; s < servers; s++) {
            unsigned char junk[64];
            MPI_Send(buf, 3, MPI_BYTE, s, 7101, inter);                          /* truncated */
            memset(junk, 0xAB, sizeof junk);
            MPI_Send(junk, sizeof junk, MPI_BYTE, s, 7101, inter);                /* bad magic */
            uint32_t lie = 0x7fffffffu;
            n = frame(buf, 4, 1, 0, &lie, 4);                                     /* put, key length beyond the frame */
            MPI_Send(buf, (int)n, MPI_BYTE, s, 7101, inter);
            n = frame(buf, 99, 2, 0, NULL, 0);                                    /* unknown kind */
            MPI_Send(buf, (int)n, MPI_BYTE, s, 7101, inter);
            n = frame(buf, 5, 3, -5, "k", 1);                                     /* get, negative capacity */
            MPI_Send(buf, (int)n, MPI_BYTE, s, 7101, inter);
        }
        /* The two well-framed ones are answered with codes: the lying put KV_EREMOTE, the get of a
         * key never written KV_ENOTFOUND. Then this job leaves as a client does. */
        int bad = 0;
        for (int s = 0; s < servers; s++) {
            for (int k = 0; k < 2; k++) {
                MPI_Recv(buf, sizeof buf, MPI_BYTE, s, 7102, inter, &st);
                uint64_t id;
                memcpy(&id, buf + 8, 8);
                memcpy(&code, buf + 16, 8);
                if (!((id == 1 && code == -10) || (id == 3 && code == -1))) {
                    fprintf(stderr, "raw: server rank %d answered request %llu with %lld\n", s, (unsigned long long)id, (long long)code);
                    bad = 1;
                }
            }
            n = frame(buf, 9, 0, 0, NULL, 0);
            MPI_Send(buf, (int)n, MPI_BYTE, s, 7101, inter);
        }
        MPI_Comm_disconnect(&inter);
        printf("raw junk: %s\n", bad ? "FAIL" : "malformed requests dropped or answered with codes");
        return bad;
    }
    /* Silent: the server gives up on the hello after its deadline and says so (KV_ETIMEDOUT). The
     * answer is awaited: a process that is gone by then would leave the server writing to a
     * closed connection (see docs/client-server.md, "A client job that dies"). */
    MPI_Status st;
    MPI_Recv(buf, sizeof buf, MPI_BYTE, 0, 7104, inter, &st);
    int64_t code;
    memcpy(&code, buf + 16, 8);
    MPI_Comm_free(&inter);
    printf("raw silent: the server answered %lld\n", (long long)code);
    return code == -8 ? 0 : 1;
}

/* churn: ROUNDS rounds of kv_connect, one put per rank, kv_close; each round's close starts at
 * the same moment as the partner job's (rank 0s meet through files DIR/<me>.<round> and
 * DIR/<partner>.<round>), so a 4-rank server sees two jobs leave at once, in either order on
 * each of its ranks. */
static int churn(const char *address, const char *dir, const char *me, const char *partner, int rounds) {
    int rank, bad = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    for (int r = 0; r < rounds && !bad; r++) {
        kv_store *kv = NULL;
        int rc = kv_connect(address, MPI_COMM_WORLD, MPI_INFO_NULL, &kv);
        if (rc != KV_OK) { fprintf(stderr, "churn %s round %d: connect: %s\n", me, r, kv_errmsg(NULL)); bad = 1; break; }
        char key[128], path[4096];
        int klen = snprintf(key, sizeof key, "churn/%s/%d/%d", me, r, rank);
        if ((rc = kv_put(kv, key, (size_t)klen, key, (size_t)klen)) != KV_OK) { fprintf(stderr, "churn %s: put: %s\n", me, kv_errmsg(kv)); bad = 1; }
        if (rank == 0) {
            snprintf(path, sizeof path, "%s/%s.%d", dir, me, r);
            FILE *f = fopen(path, "w");
            if (f) fclose(f);
            snprintf(path, sizeof path, "%s/%s.%d", dir, partner, r);
            for (int i = 0; i < 60000 && access(path, F_OK) != 0; i++) usleep(1000);
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if ((rc = kv_close(&kv)) != KV_OK) { fprintf(stderr, "churn %s round %d: close: %s\n", me, r, kv_errmsg(NULL)); bad = 1; }
        MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    }
    if (rank == 0) printf("client churn %s: %d rounds of connect and close, %s\n", me, rounds, bad ? "FAILED" : "all closed");
    return bad;
}

/* late-close: rank 0 closes at once and must get KV_ETIMEDOUT (ftkv_timeout, e.g. 2 s, passes
 * while rank 1 sleeps 2x longer); rank 1 then closes; both go on with MPI collectives. The barrier
 * rank 0 gave up on is still under way in Open MPI: the library must not have freed its
 * communicator (a freed one was progressed later: segfault). */
static int late_close(const char *address) {
    int rank, bad = 0, rc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    kv_store *kv = NULL;
    if ((rc = kv_connect(address, MPI_COMM_WORLD, MPI_INFO_NULL, &kv)) != KV_OK) {
        fprintf(stderr, "late-close: connect: %s\n", kv_errmsg(NULL));
        return 1;
    }
    const char *t = getenv("FTKV_TIMEOUT");
    if (rank == 1) usleep((useconds_t)(2e6 * (t ? atof(t) : 2)));
    rc = kv_close(&kv);
    if (rank == 0 && rc != KV_ETIMEDOUT) { fprintf(stderr, "late-close: rank 0's close gave %d, not KV_ETIMEDOUT\n", rc); bad = 1; }
    for (int i = 0; i < 50; i++) {
        int one = 1, sum = 0;
        MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
        usleep(20000);
    }
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf("client late-close: %s\n", bad ? "FAILED" : "rank 0 timed out in kv_close, the job went on");
    return bad;
}

int main(int argc, char **argv) {
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc == 4 && strcmp(argv[2], "raw") == 0) {
        int rc = raw_client(argv[1], argv[3]);
        MPI_Finalize();
        return rc;
    }
    if (argc == 3 && strcmp(argv[2], "late-close") == 0) {
        int rc = late_close(argv[1]);
        MPI_Finalize();
        return rc;
    }
    if (argc == 7 && strcmp(argv[2], "churn") == 0) {
        int rc = churn(argv[1], argv[3], argv[4], argv[5], atoi(argv[6]));
        MPI_Finalize();
        return rc;
    }
    if (argc < 5) {
        if (rank == 0) fprintf(stderr, "usage: client ADDRESS write PREFIX N | client ADDRESS read PREFIX W N\n");
        MPI_Finalize();
        return 2;
    }
    const char *address = argv[1], *mode = argv[2], *prefix = argv[3];
    kv_store *kv = NULL;
    double t0 = MPI_Wtime();
    int rc = kv_connect(address, MPI_COMM_WORLD, MPI_INFO_NULL, &kv);
    if (rc != KV_OK) {
        /* The code is what the tests check: printed on one line, the detail beside it. */
        if (rank == 0) printf("connect: %s (%d): %s\n", kv_strerror(rc), rc, kv_errmsg(NULL));
        MPI_Finalize();
        return 3;
    }
    int bad = 0, n = 0, writers = 0;
    if (strcmp(mode, "write") == 0) {
        n = atoi(argv[4]);
        unsigned char value[300];
        char key[128];
        for (int i = 0; i < n; i++) {
            int klen = snprintf(key, sizeof key, "%s/%d/%d", prefix, rank, i);
            size_t vlen = make_value(prefix, rank, i, value);
            if ((rc = kv_put(kv, key, (size_t)klen, value, vlen)) != KV_OK) {
                fprintf(stderr, "client %d: put %s: %s (%s)\n", rank, key, kv_strerror(rc), kv_errmsg(kv));
                bad++;
                break;
            }
        }
        if ((rc = kv_fence(kv)) != KV_OK) { fprintf(stderr, "client %d: fence: %s\n", rank, kv_errmsg(kv)); bad++; }
        for (int i = 0; i < n && !bad; i++) bad += check(kv, prefix, (rank + 1) % size, i);
    } else if (strcmp(mode, "read") == 0 && argc >= 6) {
        writers = atoi(argv[4]);
        n = atoi(argv[5]);
        for (long k = rank; k < (long)writers * n && bad < 10; k += size) bad += check(kv, prefix, (int)(k / n), (int)(k % n));
        /* A key nobody wrote is not found. */
        size_t len = 0;
        char none[128];
        int nlen = snprintf(none, sizeof none, "%s/none/%d", prefix, rank);
        if ((rc = kv_get(kv, none, (size_t)nlen, NULL, 0, &len)) != KV_ENOTFOUND) {
            fprintf(stderr, "client %d: a key never written gave %d, not KV_ENOTFOUND\n", rank, rc);
            bad++;
        }
    } else {
        bad = 1;
    }
    /* kv_commit: with CLIENT_COMMIT=1 the server is durable (--dir) and the commit must succeed
     * (the same version on every rank); otherwise the server is in memory and refuses it. */
    uint64_t version = 0;
    const char *want_commit = getenv("CLIENT_COMMIT");
    if (want_commit && strcmp(want_commit, "1") == 0) {
        if ((rc = kv_commit(kv, &version)) != KV_OK) {
            fprintf(stderr, "client %d: kv_commit: %s (%s)\n", rank, kv_strerror(rc), kv_errmsg(kv));
            bad++;
        }
        uint64_t lo = 0, hi = 0;
        MPI_Allreduce(&version, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&version, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
        if (lo != hi || lo == 0) { fprintf(stderr, "client %d: kv_commit gave versions %llu..%llu across ranks\n", rank, (unsigned long long)lo, (unsigned long long)hi); bad++; }
        if (rank == 0 && !bad) printf("client commit: version %llu\n", (unsigned long long)version);
    } else if ((rc = kv_commit(kv, &version)) != KV_EMISUSE) {
        fprintf(stderr, "client %d: kv_commit on an in-memory server gave %d, not KV_EMISUSE\n", rank, rc);
        bad++;
    }
    if ((rc = kv_close(&kv)) != KV_OK) { fprintf(stderr, "client %d: close: %s\n", rank, kv_errmsg(NULL)); bad++; }
    int total = 0;
    MPI_Allreduce(&bad, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("client %s %s: %d ranks, %s, %.2f s\n", mode, prefix, size, total ? "FAILED" : "all keys read back byte for byte",
               MPI_Wtime() - t0);
    MPI_Finalize();
    return total ? 1 : 0;
}
