#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dlfcn.h>
#include <stdlib.h>
#include "cmpi.h"

/* 0: usable; 1: not initialised yet; 2: already finalised. Both queries are legal at any time. */
int cmpi_mpi_state(void) {
    int initialized = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return 2;
    MPI_Initialized(&initialized);
    return initialized ? 0 : 1;
}

/* See cmpi.h. Open MPI's internal setter is looked up, not linked: with another MPI, or an Open
 * MPI without it, nothing happens (returns 0). */
int cmpi_poll_transport_events_often(void) {
    if (getenv("OMPI_MCA_mpi_event_tick_rate") != NULL) return 0; /* the user chose a rate */
    void (*set_rate)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "opal_progress_set_event_poll_rate");
    if (set_rate == NULL) return 0;
    set_rate(1);
    return 1;
}
