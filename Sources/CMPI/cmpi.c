#include "cmpi.h"

/* 0: usable; 1: not initialised yet; 2: already finalised. Both queries are legal at any time. */
int cmpi_mpi_state(void) {
    int initialized = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return 2;
    MPI_Initialized(&initialized);
    return initialized ? 0 : 1;
}
