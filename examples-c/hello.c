/* hello.c - the smallest libftkv program: each rank stores a greeting, reads its neighbour's. */
#include <stdio.h>
#include <string.h>
#include <mpi.h>
#include <ftkv.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size, rc;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    kv_store *kv;
    if ((rc = kv_open(MPI_COMM_WORLD, "hello", MPI_INFO_NULL, &kv)) != KV_OK) {
        fprintf(stderr, "kv_open: %s: %s\n", kv_strerror(rc), kv_errmsg(NULL));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    char key[32], value[64];
    snprintf(key, sizeof key, "greeting/%d", rank);
    snprintf(value, sizeof value, "hello from rank %d", rank);
    rc = kv_put(kv, key, strlen(key), value, strlen(value) + 1);   /* local, copied */
    if (rc == KV_OK) rc = kv_fence(kv);                            /* now visible everywhere */

    size_t len = 0;
    snprintf(key, sizeof key, "greeting/%d", (rank + 1) % size);
    if (rc == KV_OK) rc = kv_get(kv, key, strlen(key), value, sizeof value, &len);
    if (rc == KV_OK) printf("rank %d read %s: \"%s\"\n", rank, key, value);
    else fprintf(stderr, "rank %d: %s: %s\n", rank, kv_strerror(rc), kv_errmsg(kv));

    int rc_close = kv_close(&kv);
    MPI_Finalize();
    return rc == KV_OK && rc_close == KV_OK ? 0 : 1;
}
