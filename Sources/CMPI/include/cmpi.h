/* The only place that names mpi.h handle macros. Open MPI defines MPI_COMM_WORLD and friends as
 * casts of addresses of incomplete globals, which Swift cannot import; these inline wrappers add
 * no exported symbol to libftkv.so. */
#ifndef FTKV_CMPI_H
#define FTKV_CMPI_H
#include <mpi.h>

static inline MPI_Comm cmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm cmpi_comm_self(void) { return MPI_COMM_SELF; }
static inline MPI_Comm cmpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype cmpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype cmpi_int(void) { return MPI_INT; }
static inline MPI_Datatype cmpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype cmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Op cmpi_op_min(void) { return MPI_MIN; }
static inline MPI_Op cmpi_op_max(void) { return MPI_MAX; }
static inline MPI_Op cmpi_op_sum(void) { return MPI_SUM; }
static inline MPI_Info cmpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Request cmpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Message cmpi_message_null(void) { return MPI_MESSAGE_NULL; }
static inline MPI_Errhandler cmpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *cmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline void *cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline int cmpi_max_info_val(void) { return MPI_MAX_INFO_VAL; }
static inline int cmpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int cmpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline MPI_Comm_copy_attr_function *cmpi_comm_null_copy_fn(void) { return MPI_COMM_NULL_COPY_FN; }

/* Fortran integer handles (use mpi) to C handles, for the Fortran entry points. */
static inline MPI_Comm cmpi_comm_f2c(MPI_Fint comm) { return MPI_Comm_f2c(comm); }
static inline MPI_Info cmpi_info_f2c(MPI_Fint info) { return MPI_Info_f2c(info); }
static inline MPI_Fint cmpi_comm_c2f(MPI_Comm comm) { return MPI_Comm_c2f(comm); }

/* A non-inline function in cmpi.c keeps this a real C target, so SwiftPM rebuilds dependents
 * when this header changes. It reports whether MPI is usable now (initialised, not finalised). */
int cmpi_mpi_state(void);

/* Open MPI 4.1 runs its TCP transport's socket events only while a count of "event users" is
 * positive, else once per tick (mpi_event_tick_rate). A connection to a process that died drops
 * that count without having raised it (btl_tcp_endpoint.c: the failed connect's close), and from
 * then on every TCP send and receive of the process, to any peer, crawls: a server whose client
 * job was killed stopped answering its other clients for good (measured). Polling the events at
 * every tick (1 us) keeps TCP going whatever the count. Returns 1 if the rate was set, 0 if not
 * (another MPI, or OMPI_MCA_mpi_event_tick_rate given by the user). Client/server mode only. */
int cmpi_poll_transport_events_often(void);
#endif
