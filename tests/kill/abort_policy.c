/*
 * abort_policy.c - ftkv_on_failure=abort: a bulk-synchronous code whose own exchanges would hang
 * on a dead rank asks the library to end the job promptly, naming the dead rank.
 *
 * Every rank opens a store with ftkv_on_failure=abort, puts and fences; rank ABORT_VICTIM (default
 * the last) then SIGKILLs itself, and the others enter an MPI_Barrier of their own on
 * MPI_COMM_WORLD, which can never complete. The library's progress thread must detect the death
 * and end the job (MPI_Abort) within the suspicion time plus a margin: tests/run-all.sh times the
 * mpirun, checks its exit status is not 0, and looks for the message naming the victim. A survivor
 * that leaves the barrier prints "abort_policy: FAIL".
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ftkv.h"

int main(int argc, char **argv) {
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int victim = getenv("ABORT_VICTIM") ? atoi(getenv("ABORT_VICTIM")) : size - 1;
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "ftkv_on_failure", "abort");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "abort", info, &kv);
    MPI_Info_free(&info);
    if (rc != KV_OK) {
        printf("abort_policy: FAIL kv_open: %s\n", kv_errmsg(NULL));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    char key[32];
    snprintf(key, sizeof key, "k/%d", rank);
    if ((rc = kv_put(kv, key, strlen(key), "v", 1)) != KV_OK || (rc = kv_fence(kv)) != KV_OK) {
        printf("abort_policy: FAIL put/fence: %s\n", kv_errmsg(kv));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == victim) {
        printf("abort_policy: rank %d killing itself\n", rank);
        fflush(stdout);
        raise(SIGKILL);
    }
    MPI_Barrier(MPI_COMM_WORLD); /* the application's own collective: hangs on the dead rank */
    printf("abort_policy: FAIL rank %d left a barrier with a dead member\n", rank);
    MPI_Finalize();
    return 1;
}
