/*
 * ftkv.h - libftkv: a fault-tolerant, distributed key-value checkpoint store for MPI applications.
 *
 * Every rank of the communicator given to kv_open holds a shard of the data and replicas of other
 * shards. Any rank may put, get and delete any key.
 *
 * Conventions that hold for every function below:
 *  - Results are int codes: KV_OK (0) on success, a negative KV_E* code otherwise. No function
 *    aborts the job, raises a signal, or prints as its only report; kv_strerror() names a code and
 *    kv_errmsg() gives the detail of the calling thread's last failed call on a handle.
 *  - "Collective" calls must be made by every rank of the store's communicator, in the same order.
 *    Their result is agreed across ranks where stated. "Local" calls involve only the calling rank
 *    (though they may wait for another rank to answer, always with a deadline, see ftkv_timeout).
 *  - Thread safety: with MPI_THREAD_MULTIPLE, any number of application threads may call kv_put,
 *    kv_get, kv_del, kv_locate, kv_stat and kv_errmsg on one handle at the same time, also while
 *    one thread is inside kv_fence or kv_close; the library serialises them. Collective calls
 *    (kv_open, kv_fence, kv_close) are made by one thread per rank at a time; a second concurrent
 *    kv_fence/kv_close on the same rank returns KV_EMISUSE. A call racing kv_close returns
 *    KV_EMISUSE (it never touches freed state), and nothing it wrote is acknowledged then lost.
 *    Below MPI_THREAD_MULTIPLE, call from the thread MPI allows.
 *  - Consistency (ftkv_consistency=fence, the default): fences divide time into intervals, and a
 *    fence interval is a snapshot. Between two fences, kv_get on a rank returns the state as of the
 *    last kv_fence this rank completed, plus this rank's own later puts and deletes. Writes of a
 *    fence still in progress on other ranks become visible to a rank only when it completes that
 *    fence, so "fence, read neighbours, write, fence" is correct with one fence per step. A write
 *    made by another thread while a fence runs belongs to the next interval. (A kv_get racing its
 *    own rank's kv_fence on another thread may see the state before or after that fence.)
 *  - Keys and values are byte strings. Keys are 1..KV_MAX_KEY_LEN bytes, values 0..KV_MAX_VALUE_LEN
 *    bytes; beyond that a call returns KV_EINVAL. Buffers passed in are only borrowed for the call.
 *  - Configuration comes from MPI_Info keys at kv_open; an environment variable of the same name in
 *    upper case (ftkv_replicas -> FTKV_REPLICAS) overrides the info key. See docs/configuration.md.
 *
 * The header compiles as C99 and as C++.
 */
#ifndef FTKV_H
#define FTKV_H

#include <stddef.h>
#include <stdint.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header; kv_version() reports the version of the library actually loaded. */
#define FTKV_VERSION_MAJOR 0
#define FTKV_VERSION_MINOR 1
#define FTKV_VERSION_PATCH 0

/* Result codes. Stable: the numbers never change meaning between releases. */
#define KV_OK          0   /* success */
#define KV_ENOTFOUND  (-1) /* the key has no value (never put, or deleted); not a failure */
#define KV_ETOOSMALL  (-2) /* value longer than the buffer: nothing written, true length reported */
#define KV_EINVAL     (-3) /* bad argument: NULL key, empty or oversized key/value, bad name or option */
#define KV_EMISUSE    (-4) /* NULL or closed handle, MPI not initialised or finalised, wrong call order */
#define KV_ENOMEM     (-5) /* memory could not be allocated */
#define KV_EIO        (-6) /* storage read/write failed */
#define KV_EMPI       (-7) /* an MPI call failed */
#define KV_ETIMEDOUT  (-8) /* another rank did not answer within the deadline (ftkv_timeout) */
#define KV_EINTERNAL  (-9) /* a bug in libftkv: please report with kv_errmsg() */
#define KV_EREMOTE   (-10) /* another rank refused or could not carry out the request (its store
                              failed to apply a write, saw a different membership epoch, or sent
                              a malformed reply); the handle stays usable */
#define KV_EDATALOSS (-11) /* every stored copy of some committed data is missing or damaged
                              (kv_open of a committed store; kv_errmsg names what is lost) */
#define KV_EPROCFAILED (-12) /* members failed and the store moved to a new view without them
                              (the call did not complete: retry it; see "Failures" below), or
                              every rank holding a key has failed (kv_get) */
#define KV_EDENIED   (-13) /* kv_connect: the server refused this client job (wrong or missing
                              secret); nothing was read or written */
#define KV_ENOSERVER (-14) /* kv_connect: no server at that port or name (unknown service name,
                              malformed port, no port file, server stopped) */

/* Limits on keys and values (bytes). */
#define KV_MAX_KEY_LEN   ((size_t)65536)
#define KV_MAX_VALUE_LEN ((size_t)1 << 30)
/* Store names: 1..KV_MAX_NAME_LEN characters from [A-Za-z0-9._-]. */
#define KV_MAX_NAME_LEN  128

/* An open store. Opaque; handles are checked, so a closed handle is reported, not dereferenced. */
typedef struct kv_store kv_store;

/*
 * kv_open - open (create) the store `name` over `comm`.            COLLECTIVE over comm.
 * comm: any intracommunicator (MPI_COMM_WORLD, a split, MPI_COMM_SELF); the store works on a private
 *       duplicate, so the caller's traffic and the store's never mix. An intercommunicator is
 *       KV_EINVAL on every rank (merge it first with MPI_Intercomm_merge).
 * name: NUL-terminated store name (see KV_MAX_NAME_LEN); every rank must pass the same name.
 * info: MPI_INFO_NULL or configuration keys (docs/configuration.md).
 * kv:   receives the handle; set to NULL on failure.
 * Restart: if any rank's directory (ftkv_dir, default ./ftkv-data; one per node or one shared)
 * holds committed versions of `name`, kv_open loads the newest complete one (or the one ftkv_load
 * names; ftkv_load=none starts empty) on this communicator, whatever its size: keys are
 * redistributed over the new ranks. A data file missing or damaged in every directory is loaded
 * from its replicas' files (reported on stderr by rank 0 and in KV_STAT_REPAIRED_FILES); only
 * when every copy of some key is gone does kv_open fail, with KV_EDATALOSS.
 * Returns KV_OK, KV_EINVAL (bad or mismatched name or option: agreed, every rank gets it),
 * KV_EMISUSE (kv == NULL, comm == MPI_COMM_NULL, MPI not initialised/finalised), KV_ENOMEM,
 * KV_EMPI, KV_ETIMEDOUT, KV_EDATALOSS. Apart from kv == NULL and comm == MPI_COMM_NULL, the
 * result is agreed.
 * When no handle is returned, kv_errmsg(NULL) gives the detail.
 */
int kv_open(MPI_Comm comm, const char *name, MPI_Info info, kv_store **kv);

/*
 * kv_open_f - kv_open for Fortran `use mpi` (integer handles). COLLECTIVE. `name` need not be
 * NUL-terminated: namelen bytes are used. Used by the ftkv Fortran module (ftkv.f90).
 */
int kv_open_f(MPI_Fint comm, const char *name, size_t namelen, MPI_Fint info, kv_store **kv);

/*
 * kv_connect - connect this job to a store server (`ftkv serve`, docs/client-server.md).
 *                                                                    COLLECTIVE over comm.
 * port: where the server listens: "file:PATH" (the port file the server wrote: port and secret),
 *       a port name as MPI_Open_port gave it, or a service name the server published (--name;
 *       across mpirun jobs both sides need `mpirun --ompi-server file:URI`).
 * comm: this job's intracommunicator. info: MPI_INFO_NULL or keys: ftkv_secret (the server's
 *       secret, when not given by a port file; or FTKV_SECRET), ftkv_timeout (every wait,
 *       connecting included; default 60 s).
 * On the handle, kv_put/kv_get/kv_del/kv_cas work as on an embedded store with sequential
 * consistency: a put returns once every replica on the server holds it. kv_fence is a barrier of
 * this job (after it, every rank of this job reads what the others wrote before it). kv_close
 * is collective over this job and frees the connection (no MPI_Comm_disconnect: see
 * docs/client-server.md). kv_commit asks a durable server (ftkv serve --dir) for a version (see
 * kv_commit); kv_flush_status, kv_failed, kv_comm, kv_locate return KV_EMISUSE; kv_stat answers KV_STAT_RANK, KV_STAT_SIZE (of this job) and KV_STAT_REPLICAS.
 * A server rank that dies (server run under mpirun --enable-recovery) costs at most one retry,
 * made inside the library: a put, get or del its gateway does not answer within 5 s (plus the
 * bytes at 50 MB/s), or answers KV_EPROCFAILED (a server rank the others excluded: paused past
 * ftkv_suspect_after), goes to the next server rank; a kv_cas is never sent twice and returns
 * KV_EPROCFAILED after ftkv_timeout (it may have taken effect: read the key).
 * Side effect on the process: under Open MPI, kv_connect makes its TCP transport poll socket
 * events every eighth progress call (mpi_event_tick_rate 1 us), so a dead server rank cannot
 * stall this job's TCP traffic (Open MPI 4.1 otherwise slows it to a crawl after a failed
 * reconnect; docs/client-server.md). An OMPI_MCA_mpi_event_tick_rate you set is kept.
 * Returns KV_OK, KV_EINVAL, KV_EMISUSE, KV_ENOSERVER (unknown name, unreadable port file,
 * malformed port, or no server accepted within ftkv_timeout: the attempt leaves a thread blocked
 * inside MPI_Comm_connect; measured, the process still finalizes and exits), KV_EDENIED (wrong or
 * missing secret), KV_ETIMEDOUT, KV_EMPI. The result is agreed by every rank of comm.
 */
int kv_connect(const char *port, MPI_Comm comm, MPI_Info info, kv_store **kv);

/*
 * kv_connect_f - kv_connect for Fortran `use mpi` (integer handles). COLLECTIVE. `port` need not
 * be NUL-terminated: portlen bytes are used, trailing blanks dropped. Used by ftkv_connect
 * (ftkv.f90).
 */
int kv_connect_f(const char *port, size_t portlen, MPI_Fint comm, MPI_Fint info, kv_store **kv);

/*
 * kv_close - flush (as kv_fence), then release the store.          COLLECTIVE.
 * Sets *kv = NULL in every case. kv == NULL or *kv == NULL is fine (returns KV_OK).
 * Returns the fence's result (see kv_fence), or KV_EMISUSE for a closed handle or after
 * MPI_Finalize (memory is still released). The handle is gone afterwards, so the detail of a
 * failure is in kv_errmsg(NULL).
 */
int kv_close(kv_store **kv);

/*
 * kv_put - set key to value.                                         LOCAL.
 * Copies key and value before returning. Read-your-writes: a kv_get on this rank sees the value at
 * once. Other ranks see it after the next kv_fence (default, ftkv_consistency=fence), or as soon as
 * kv_put returns with ftkv_consistency=sequential (the put then waits for every replica).
 * Fence consistency: two ranks writing the same key in the same interval: the higher rank's value
 * wins on every replica (a rank's own later write always wins over its earlier one).
 * Sequential consistency: the key's primary replica orders the writes to it as they reach it, so a
 * put that returned KV_OK is never superseded by a write that completed before it began, and
 * concurrent puts to one key resolve the same way on every replica (one of them wins everywhere).
 * Returns KV_OK, KV_EINVAL, KV_EMISUSE, KV_ENOMEM; with sequential consistency also KV_EMPI,
 * KV_ETIMEDOUT and KV_EREMOTE (the put may then have reached some replicas).
 */
int kv_put(kv_store *kv, const void *key, size_t keylen, const void *value, size_t valuelen);

/*
 * kv_get - read key's value into buf.                                 LOCAL.
 * Always sets *valuelen (when valuelen != NULL) to the value's true length. If the value is longer
 * than bufsize, nothing is written and KV_ETOOSMALL is returned; buf == NULL (with any bufsize)
 * asks for the length only and returns KV_OK. A missing or deleted key returns KV_ENOTFOUND with
 * *valuelen = 0. May ask a remote rank; with a background progress thread (MPI_THREAD_MULTIPLE) it
 * answers at once, otherwise when it next enters a libftkv call (any call; in a tight loop of
 * calls, within 20 microseconds; see docs/progress.md).
 * Returns KV_OK, KV_ENOTFOUND, KV_ETOOSMALL, KV_EINVAL, KV_EMISUSE, KV_ENOMEM, KV_EMPI,
 * KV_ETIMEDOUT, KV_EREMOTE, KV_EPROCFAILED (every rank holding the key has failed: kv_failed).
 */
int kv_get(kv_store *kv, const void *key, size_t keylen, void *buf, size_t bufsize, size_t *valuelen);

/*
 * kv_del - delete key (a tombstone, visible like a put).               LOCAL.
 * Deleting a missing key is not an error. Returns as kv_put.
 */
int kv_del(kv_store *kv, const void *key, size_t keylen);

/*
 * kv_cas - compare-and-swap: if key's value is `expected`, make it `desired`.   LOCAL.
 * expected == NULL (expectedlen 0) expects the key to have no value (never put, or deleted):
 * put-if-absent. desired == NULL (desiredlen 0) deletes the key: take. An empty value (a non-NULL
 * pointer, length 0) is a value, not its absence. *swapped = 1 if the swap happened, else 0 (the
 * key held another value; read it with kv_get and retry).
 * Linearizable across ranks, under either ftkv_consistency: the key's primary replica decides
 * every kv_cas of the key in one order, and answers only after every replica applied the swap,
 * so a swap takes effect at once on all of them and survives the primary's failure. A kv_get
 * that begins after a kv_cas returned sees its value (or a later one); one concurrent with it
 * may see the value before or after. Use kv_cas for every write of a key it coordinates: a
 * kv_put of such a key takes part only from the fence that makes it visible (with sequential
 * consistency, once it returns).
 * Failures: KV_EPROCFAILED (see "Failures") means the swap may or may not have taken effect:
 * every survivor sees the same outcome after the view change, so read the key (a value that
 * names its writer tells whether it was this rank's), then retry if needed. A key whose every
 * replica failed gives KV_EPROCFAILED until a kv_put writes it anew.
 * expectedlen + desiredlen is at most KV_MAX_VALUE_LEN.
 * Returns KV_OK, KV_EINVAL, KV_EMISUSE, KV_ENOMEM, KV_EMPI, KV_ETIMEDOUT, KV_EREMOTE (the primary
 * could not carry it out; it may have taken effect: read the key), KV_EPROCFAILED.
 */
int kv_cas(kv_store *kv, const void *key, size_t keylen, const void *expected, size_t expectedlen,
           const void *desired, size_t desiredlen, int *swapped);

/*
 * kv_fence - make every earlier kv_put/kv_del of every rank visible on every rank.   COLLECTIVE.
 * On return, all replicas of every key hold the latest value written before the fence, and this
 * rank's gets see exactly that state (plus its own later writes) until its next fence, even while
 * faster ranks already ship the next interval's writes (see "Consistency" above).
 * Returns KV_OK, KV_EMISUSE, KV_ENOMEM, KV_EMPI, KV_ETIMEDOUT, KV_EREMOTE. KV_EREMOTE: a replica
 * refused some of this rank's writes (kv_errmsg names it); the fence still completed on every rank
 * and the handle stays usable. After KV_ETIMEDOUT, KV_ENOMEM or KV_EMPI the handle is unusable
 * (ranks may be left in different steps of the fence): later calls return that code; close it.
 * (KV_ETIMEDOUT from a local call such as kv_get leaves the handle usable.)
 */
int kv_fence(kv_store *kv);

/*
 * kv_commit - make the store's current state a durable version.      COLLECTIVE.
 * A kv_fence, then every rank writes the records it holds as a replica to its directory
 * (ftkv_dir/<name>/v<version>/, created if missing), checksummed and fsynced; once every
 * rank's data is durable the version is published by renaming manifest copies into place.
 * Incremental: a rank whose data did not change since its last commit (in this job) reuses its
 * files (hard links), one where a few records changed writes a delta of them, so a commit costs
 * about what changed. *version (if not NULL) receives the version number: numbers increase (a
 * failed commit uses one up). All or nothing: a version exists on restart only if every rank's
 * data of it was durable; a job killed before the first manifest copy is published restarts from
 * the previous version, one killed after it from this one. The newest ftkv_keep (default 2)
 * complete versions are kept; older ones are removed only after a newer one is complete.
 * Returns KV_OK; KV_EIO (a rank could not write or publish: a full disk, an unwritable or missing
 * directory; kv_errmsg on that rank says which), KV_EREMOTE (a replica refused writes in the
 * fence): both agreed on every rank, the version is not published, earlier versions and the
 * handle stay usable, and the commit may be retried. KV_EMISUSE, KV_ENOMEM, KV_EMPI, KV_ETIMEDOUT
 * as kv_fence (the handle is then unusable).
 * On a client handle (kv_connect): collective over the client job; once every rank of the job has
 * called it (so all its acknowledged writes are on the server's replicas), the server commits its
 * whole store as above and every rank receives the same version. Writes other client jobs make
 * meanwhile may or may not be in it. KV_EMISUSE from a server started without --dir; the codes of
 * the server's commit, or of reaching the server (KV_ENOSERVER, KV_EDENIED, KV_ETIMEDOUT).
 */
int kv_commit(kv_store *kv, uint64_t *version);

/*
 * kv_flush_status - has `version` reached the second tier?            LOCAL.
 * With ftkv_flush_dir set (a shared directory standing for the parallel file system), each
 * rank copies its data file of every committed version there on a background thread after
 * kv_commit returns (the application computes meanwhile; when commits come faster than the
 * flush, only the newest waiting version is copied). A restart whose node-local directories are
 * gone loads from that directory. kv_close waits for the copy in progress.
 * *flushed = 1 when every rank's file and a manifest of `version` are complete there, else 0.
 * Returns KV_OK; KV_EIO (this rank's copy of it failed: kv_errmsg says why; the node-local
 * version is unaffected); KV_ENOTFOUND (this handle did not commit `version`, or skipped its
 * flush for a newer one); KV_EINVAL (no ftkv_flush_dir, flushed == NULL); KV_EMISUSE.
 */
int kv_flush_status(kv_store *kv, uint64_t version, int *flushed);

/*
 * Failures. Ranks are named everywhere (kv_failed, kv_locate, KV_STAT_RANK) by their rank in the
 * communicator given to kv_open, which stays their identity when the store shrinks.
 * Detection: every rank with a progress thread sends a heartbeat to the next such rank every
 * ftkv_heartbeat seconds (default 0.1) and watches the previous one; ftkv_suspect_after seconds
 * of silence (default 0.8) make it announce that rank as failed to all. Ranks without a progress
 * thread (below MPI_THREAD_MULTIPLE, or ftkv_progress=inline) are not watched: such a rank may
 * compute for minutes without calling the library, so its death shows only as deadlines
 * (ftkv_timeout) on what it owes. A failed rank stays failed.
 * Recovery (online, no restart): kv_get reads from the next live replica at once. The survivors
 * agree on the failed set (the lowest live rank coordinates; if it dies, the next one does),
 * move to a new view (KV_STAT_EPOCH + 1) on a communicator of the survivors, and copy every key
 * to its replicas under the new placement, so ftkv_replicas copies exist again (as long as fewer
 * than ftkv_replicas holders of a key failed at once). A rank that was only stopped (SIGSTOP)
 * past the suspicion time is excluded like a dead one: when it wakes up, its calls return
 * KV_EPROCFAILED, and nothing it sends is applied by the others.
 * What the application sees: the call that was waiting when the view changed, or else the next
 * call, returns KV_EPROCFAILED once (kv_errmsg names the failed ranks); later calls work on the
 * survivors. Per call: kv_put/kv_del/kv_get/kv_locate/kv_stat/kv_failed did nothing (retry);
 * kv_fence did not complete, its interval's writes are kept and may be partly visible until the
 * retried kv_fence completes them (retry it, on every survivor); kv_commit did not commit (the
 * version may exist on disk for a restart; retry it, which commits a newer version); with
 * sequential consistency a kv_put/kv_del may have reached some replicas (retry it: writes are
 * idempotent). kv_close retries its fence itself. Without ULFM in the MPI, one window is not
 * survivable: a survivor dying during the milliseconds the new communicator is being created
 * (once every survivor said it is ready to; a death before that, the coordinator's included,
 * makes the others decide again).
 * With ftkv_on_failure=abort the rank that detects a failure ends the whole job instead
 * (MPI_Abort on MPI_COMM_WORLD, the dead rank named on stderr): for codes whose own exchanges
 * would hang on a dead neighbour and that restart from their last kv_commit.
 */

/*
 * kv_failed - the ranks this rank knows to have failed.               LOCAL.
 * Ranks of the communicator given to kv_open, ascending; at most maxranks are written to ranks,
 * the full count to *count.
 * Returns KV_OK, KV_EINVAL (count == NULL, ranks == NULL with maxranks > 0), KV_EMISUSE,
 * KV_EPROCFAILED (see "Failures").
 */
int kv_failed(kv_store *kv, int *ranks, int maxranks, int *count);

/*
 * kv_comm - the communicator of the store's live members.             LOCAL.
 * Until a member fails, the communicator given to kv_open. After a view change, a communicator of
 * the survivors, created by the view change itself (ranks in it follow the ranks of kv_open's
 * communicator: the lowest survivor is rank 0): what a bulk-synchronous application continues on.
 * The store owns it: do not free it; it stays valid until kv_close.
 * Returns KV_OK, KV_EINVAL (comm == NULL), KV_EMISUSE, KV_EPROCFAILED (see "Failures").
 */
int kv_comm(kv_store *kv, MPI_Comm *comm);

/* kv_comm_f - kv_comm for Fortran `use mpi` (an integer handle). Used by ftkv_comm (ftkv.f90). */
int kv_comm_f(kv_store *kv, MPI_Fint *comm);

/*
 * kv_locate - the ranks (of kv_open's communicator) that hold key, primary first.   LOCAL.
 * Writes at most maxranks ranks into ranks and the full count into *nranks.
 * Returns KV_OK, KV_EINVAL, KV_EMISUSE.
 */
int kv_locate(kv_store *kv, const void *key, size_t keylen, int *ranks, int maxranks, int *nranks);

/* What kv_stat reports. */
#define KV_STAT_RANK            1  /* this rank in the communicator given to kv_open */
#define KV_STAT_SIZE            2  /* live members of the store (ranks of kv_comm's communicator) */
#define KV_STAT_REPLICAS        3  /* replication factor in effect (min(ftkv_replicas, size)) */
#define KV_STAT_NODES           4  /* distinct nodes among the ranks */
#define KV_STAT_LOCAL_KEYS      5  /* live keys (not tombstones) this rank holds as a replica */
#define KV_STAT_LOCAL_BYTES     6  /* bytes of key+value this rank holds as a replica */
#define KV_STAT_PENDING_OPS     7  /* puts/dels of this rank not yet made visible by a fence */
#define KV_STAT_PROGRESS_THREAD 8  /* 1 if a background progress thread serves requests, else 0 */
#define KV_STAT_EPOCH           9  /* membership epoch of the current view */
#define KV_STAT_REQUESTS_SERVED 10 /* remote requests this rank has answered */
#define KV_STAT_DROPPED_MESSAGES 11 /* messages from other ranks dropped: malformed, from another
                                       membership epoch, unexpected, or never finished */
#define KV_STAT_VERSION         12 /* the version last committed, or loaded by kv_open (0: none) */
#define KV_STAT_REPAIRED_FILES  13 /* data files kv_open found missing or damaged and loaded from
                                       replicas instead */
#define KV_STAT_RECOVERY_MICROS 14 /* the last view change on this rank: microseconds from the
                                       decision to the store usable again (shrink + re-replication) */
#define KV_STAT_RECOVERY_BYTES  15 /* key+value bytes this rank sent in it to restore copies */
#define KV_STAT_MESSAGES_SENT   16 /* messages this rank's store has sent to other ranks: requests,
                                       replies, write batches, membership notices (not heartbeats,
                                       not the messages inside MPI's own collectives) */
#define KV_STAT_BYTES_SENT      17 /* bytes of those messages */
#define KV_STAT_TABLE_BYTES     18 /* bytes allocated for records and their indexes: the copies this
                                       rank holds and its writes not yet fenced (address space
                                       reserved; its pages are touched as they fill) */

/*
 * kv_stat - read one statistic (KV_STAT_*) of this rank.              LOCAL.
 * Returns KV_OK, KV_EINVAL (unknown `what`, value == NULL), KV_EMISUSE.
 */
int kv_stat(const kv_store *kv, int what, uint64_t *value);

/*
 * kv_strerror - static text naming a result code (unknown codes get a generic text).   LOCAL.
 * Never NULL; safe before MPI_Init and after MPI_Finalize.
 */
const char *kv_strerror(int code);

/*
 * kv_errmsg - detail of the calling thread's last failed call on kv.   LOCAL.
 * Messages belong to the thread that failed: another thread's failure on the same handle does not
 * change what this thread reads. kv == NULL (or a closed handle) gives the detail of this thread's
 * last failed call that had no valid handle (e.g. a failed kv_open or kv_close). Never NULL (""
 * when there is nothing to report). The text stays valid until this thread's next failing call on
 * the same handle (or, for kv == NULL, its next failing call without a handle), or its exit.
 */
const char *kv_errmsg(const kv_store *kv);

/*
 * kv_version - the loaded library's version; any pointer may be NULL. LOCAL.
 * Returns the version as a static string "MAJOR.MINOR.PATCH".
 */
const char *kv_version(int *major, int *minor, int *patch);

#ifdef __cplusplus
}
#endif

#endif /* FTKV_H */
