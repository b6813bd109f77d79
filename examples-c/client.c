/*
 * examples-c/client.c - a job that uses a store served by another job (`ftkv serve`).
 *
 *   mpirun -n 2 --ompi-server file:URI bin/client file:PORTFILE write      each rank writes 100 keys
 *   mpirun -n 3 --ompi-server file:URI bin/client file:PORTFILE read 2    reads what 2 ranks wrote
 *
 * The writer job ends; the reader, a separate job of another size, finds every value the writer
 * left in the server. scripts/client-server-demo.sh runs the whole sequence.
 */
#include <mpi.h>
#include <ftkv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 100

int main(int argc, char **argv) {
    int provided, rank, size, bad = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3 || (strcmp(argv[2], "read") == 0 && argc < 4)) {
        if (rank == 0) fprintf(stderr, "usage: client file:PORTFILE|NAME write | read WRITER_RANKS\n");
        MPI_Finalize();
        return 2;
    }
    kv_store *kv;
    int rc = kv_connect(argv[1], MPI_COMM_WORLD, MPI_INFO_NULL, &kv);
    if (rc != KV_OK) {
        if (rank == 0) fprintf(stderr, "kv_connect: %s: %s\n", kv_strerror(rc), kv_errmsg(NULL));
        MPI_Finalize();
        return 1;
    }
    char key[64], value[64], got[64];
    if (strcmp(argv[2], "write") == 0) {
        for (int i = 0; i < KEYS; i++) {
            snprintf(key, sizeof key, "particle/%d/%d", rank, i);
            int n = snprintf(value, sizeof value, "written by rank %d of %d, item %d", rank, size, i);
            if ((rc = kv_put(kv, key, strlen(key), value, (size_t)n)) != KV_OK) {
                fprintf(stderr, "put %s: %s\n", key, kv_errmsg(kv));
                bad++;
                break;
            }
        }
        /* After the fence every rank of this job sees every other rank's writes. */
        if (kv_fence(kv) != KV_OK) bad++;
    } else {
        int writers = atoi(argv[3]);
        for (int k = rank; k < writers * KEYS; k += size) {
            int w = k / KEYS, i = k % KEYS;
            snprintf(key, sizeof key, "particle/%d/%d", w, i);
            int n = snprintf(value, sizeof value, "written by rank %d of %d, item %d", w, writers, i);
            size_t len = 0;
            rc = kv_get(kv, key, strlen(key), got, sizeof got, &len);
            if (rc != KV_OK || len != (size_t)n || memcmp(got, value, len) != 0) {
                fprintf(stderr, "get %s: %s\n", key, rc == KV_OK ? "different bytes" : kv_strerror(rc));
                bad++;
            }
        }
    }
    if (kv_close(&kv) != KV_OK) bad++;
    int total = 0;
    MPI_Reduce(&bad, &total, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("client %s, %d ranks: %s\n", argv[2], size, total ? "FAILED" : "ok");
    MPI_Finalize();
    return total ? 1 : 0;
}
