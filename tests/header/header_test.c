/* header_test.c - ftkv.h must compile on its own, twice, as C99 and as C++, with every warning an
 * error; and its prototypes must be the documented ones (each is assigned to a pointer of the
 * exact type). tests/run-all.sh also links it against the library and runs it: main checks the
 * values of the codes, stats and limits. */
#include <ftkv.h>
#include <ftkv.h> /* include guard */

typedef int (*open_t)(MPI_Comm, const char *, MPI_Info, kv_store **);
typedef int (*open_f_t)(MPI_Fint, const char *, size_t, MPI_Fint, kv_store **);
typedef int (*connect_t)(const char *, MPI_Comm, MPI_Info, kv_store **);
typedef int (*connect_f_t)(const char *, size_t, MPI_Fint, MPI_Fint, kv_store **);
typedef int (*close_t)(kv_store **);
typedef int (*put_t)(kv_store *, const void *, size_t, const void *, size_t);
typedef int (*get_t)(kv_store *, const void *, size_t, void *, size_t, size_t *);
typedef int (*del_t)(kv_store *, const void *, size_t);
typedef int (*cas_t)(kv_store *, const void *, size_t, const void *, size_t, const void *, size_t, int *);
typedef int (*comm_t)(kv_store *, MPI_Comm *);
typedef int (*comm_f_t)(kv_store *, MPI_Fint *);
typedef int (*fence_t)(kv_store *);
typedef int (*commit_t)(kv_store *, uint64_t *);
typedef int (*flush_status_t)(kv_store *, uint64_t, int *);
typedef int (*failed_t)(kv_store *, int *, int, int *);
typedef int (*locate_t)(kv_store *, const void *, size_t, int *, int, int *);
typedef int (*stat_t)(const kv_store *, int, uint64_t *);
typedef const char *(*strerror_t)(int);
typedef const char *(*errmsg_t)(const kv_store *);
typedef const char *(*version_t)(int *, int *, int *);

int main(void) {
    open_t a = kv_open;
    open_f_t b = kv_open_f;
    connect_t s = kv_connect;
    connect_f_t t = kv_connect_f;
    close_t c = kv_close;
    put_t d = kv_put;
    get_t e = kv_get;
    del_t f = kv_del;
    cas_t p = kv_cas;
    comm_t q = kv_comm;
    comm_f_t r = kv_comm_f;
    fence_t g = kv_fence;
    commit_t m = kv_commit;
    flush_status_t n = kv_flush_status;
    failed_t o = kv_failed;
    locate_t h = kv_locate;
    stat_t i = kv_stat;
    strerror_t j = kv_strerror;
    errmsg_t k = kv_errmsg;
    version_t l = kv_version;
    int codes[] = {KV_OK, KV_ENOTFOUND, KV_ETOOSMALL, KV_EINVAL, KV_EMISUSE, KV_ENOMEM,
                   KV_EIO, KV_EMPI, KV_ETIMEDOUT, KV_EINTERNAL, KV_EREMOTE, KV_EDATALOSS, KV_EPROCFAILED,
                   KV_EDENIED, KV_ENOSERVER};
    int stats[] = {KV_STAT_RANK, KV_STAT_SIZE, KV_STAT_REPLICAS, KV_STAT_NODES,
                   KV_STAT_LOCAL_KEYS, KV_STAT_LOCAL_BYTES, KV_STAT_PENDING_OPS,
                   KV_STAT_PROGRESS_THREAD, KV_STAT_EPOCH, KV_STAT_REQUESTS_SERVED,
                   KV_STAT_DROPPED_MESSAGES, KV_STAT_VERSION, KV_STAT_REPAIRED_FILES,
                   KV_STAT_RECOVERY_MICROS, KV_STAT_RECOVERY_BYTES,
                   KV_STAT_MESSAGES_SENT, KV_STAT_BYTES_SENT, KV_STAT_TABLE_BYTES};
    size_t limits[] = {KV_MAX_KEY_LEN, KV_MAX_VALUE_LEN, (size_t)KV_MAX_NAME_LEN};
    int version = FTKV_VERSION_MAJOR * 10000 + FTKV_VERSION_MINOR * 100 + FTKV_VERSION_PATCH;
    kv_store *kv = NULL;
    int all = a && b && c && d && e && f && g && h && i && j && k && l && m && n && o && p && q && r && s && t && kv == NULL;
    return all && codes[9] == -9 && codes[10] == -10 && codes[11] == -11 && codes[12] == -12 && codes[13] == -13 && codes[14] == -14 && stats[9] == 10 &&
           stats[10] == 11 && stats[11] == 12 && stats[12] == 13 && stats[13] == 14 && stats[14] == 15 && stats[15] == 16 && stats[16] == 17 && stats[17] == 18 && limits[0] == 65536 && version >= 0 ? 0 : 1;
}
