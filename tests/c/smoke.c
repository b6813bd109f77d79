/* smoke.c - the installed libftkv from a plain mpicc program (no pkg-config), run with a minimal
 * environment: it must load without the Swift toolchain or LD_LIBRARY_PATH, and work. */
#include <stdio.h>
#include <string.h>
#include <mpi.h>
#include <ftkv.h>

int main(int argc, char **argv) {
    int rank, size, rc, major = -1, minor = -1, patch = -1, bad = 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    const char *v = kv_version(&major, &minor, &patch);
    if (major != FTKV_VERSION_MAJOR || minor != FTKV_VERSION_MINOR) {
        fprintf(stderr, "rank %d: library version %s, header %d.%d.%d\n", rank, v ? v : "(null)",
                FTKV_VERSION_MAJOR, FTKV_VERSION_MINOR, FTKV_VERSION_PATCH);
        bad = 1;
    }
    kv_store *kv = NULL;
    rc = kv_open(MPI_COMM_WORLD, "smoke", MPI_INFO_NULL, &kv);
    if (rc != KV_OK) {
        fprintf(stderr, "rank %d: kv_open: %s: %s\n", rank, kv_strerror(rc), kv_errmsg(NULL));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    char key[32];
    int value = 1000 + rank, got = -1;
    size_t len = 0;
    snprintf(key, sizeof key, "smoke/%d", rank);
    if ((rc = kv_put(kv, key, strlen(key), &value, sizeof value)) != KV_OK ||
        (rc = kv_fence(kv)) != KV_OK) {
        fprintf(stderr, "rank %d: put/fence: %s: %s\n", rank, kv_strerror(rc), kv_errmsg(kv));
        bad = 1;
    }
    int peer = (rank + 1) % size;
    snprintf(key, sizeof key, "smoke/%d", peer);
    rc = kv_get(kv, key, strlen(key), &got, sizeof got, &len);
    if (rc != KV_OK || len != sizeof got || got != 1000 + peer) {
        fprintf(stderr, "rank %d: get %s: %s (%s), len %zu, value %d\n", rank, key,
                kv_strerror(rc), kv_errmsg(kv), len, got);
        bad = 1;
    }
    if ((rc = kv_close(&kv)) != KV_OK) {
        fprintf(stderr, "rank %d: kv_close: %s\n", rank, kv_strerror(rc));
        bad = 1;
    }
    int anybad = 0;
    MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf("smoke: libftkv %s on %d ranks: %s\n", v ? v : "?", size, anybad ? "FAIL" : "OK");
    MPI_Finalize();
    return anybad;
}
