/*
 * errors.c - every bad input returns its documented code and never crashes.
 *
 * NULL / closed handles (KV_EMISUSE), bad keys and values (KV_EINVAL, checked before the library
 * reads the bytes), bad, mismatched or partly bad names and options at kv_open (KV_EINVAL agreed on
 * every rank), the environment overriding MPI_Info, kv_strerror / kv_errmsg / kv_version, and kv_stat
 * with an unknown statistic. The store stays usable after each failed call.
 */
//@case 1
//@case 3
//@case 3 TEST_THREAD_LEVEL=single
#include "common.h"

static const int all_codes[] = {KV_OK,     KV_ENOTFOUND, KV_ETOOSMALL, KV_EINVAL,    KV_EMISUSE,
                                KV_ENOMEM, KV_EIO,       KV_EMPI,      KV_ETIMEDOUT, KV_EINTERNAL,
                                KV_EREMOTE};
#define NCODES ((int)(sizeof all_codes / sizeof all_codes[0]))

static void expect_errmsg(const kv_store *kv, const char *after)
{
    const char *m = kv_errmsg(kv);
    CHECK(m != NULL, "kv_errmsg(%s) is NULL after %s", kv ? "handle" : "NULL", after);
    CHECK(m == NULL || m[0] != '\0', "kv_errmsg(%s) is empty after a failed %s", kv ? "handle" : "NULL",
          after);
}

/* kv_open must give `expected` on every rank, a NULL handle on failure, and a message. */
static void open_expect(MPI_Comm comm, const char *name, MPI_Info info, int expected, const char *what)
{
    kv_store *kv = (kv_store *)(uintptr_t)0x1; /* must be overwritten */
    int rc = kv_open(comm, name, info, &kv);
    CHECK_RC(NULL, rc, expected, name, name ? strlen(name) : 0, what);
    if (rc != KV_OK) {
        CHECK(kv == NULL, "%s: failed kv_open did not set *kv = NULL", what);
        expect_errmsg(NULL, what);
    } else if (kv != NULL && kv != (kv_store *)(uintptr_t)0x1) {
        kv_close(&kv);
    }
    /* Agreed: every rank of comm got the same code. */
    int lo = rc, hi = rc;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, comm);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, comm);
    CHECK(lo == hi, "%s: result not agreed across ranks (min %d, max %d)", what, lo, hi);
}

static MPI_Info info_with(const char *key, const char *value)
{
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, key, value);
    return info;
}

static void strings_and_version(void)
{
    t_phase("kv_strerror / kv_version");
    for (int i = 0; i < NCODES; i++) {
        const char *s = kv_strerror(all_codes[i]);
        CHECK(s != NULL && s[0] != '\0', "kv_strerror(%d) is NULL or empty", all_codes[i]);
        for (int j = 0; j < i && s; j++) {
            const char *t = kv_strerror(all_codes[j]);
            CHECK(t == NULL || strcmp(s, t) != 0, "kv_strerror(%d) == kv_strerror(%d) == '%s'",
                  all_codes[i], all_codes[j], s);
        }
    }
    const int unknown[] = {1, 5, -10, -100, 12345, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = kv_strerror(unknown[i]);
        CHECK(s != NULL, "kv_strerror(%d) (unknown code) is NULL", unknown[i]);
    }
    int ma = -1, mi = -1, pa = -1;
    const char *vs = kv_version(&ma, &mi, &pa);
    CHECK(ma == FTKV_VERSION_MAJOR && mi == FTKV_VERSION_MINOR && pa == FTKV_VERSION_PATCH,
          "kv_version: %d.%d.%d, header says %d.%d.%d", ma, mi, pa, FTKV_VERSION_MAJOR,
          FTKV_VERSION_MINOR, FTKV_VERSION_PATCH);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", FTKV_VERSION_MAJOR, FTKV_VERSION_MINOR, FTKV_VERSION_PATCH);
    CHECK(vs != NULL && strcmp(vs, want) == 0, "kv_version string '%s', expected '%s'",
          vs ? vs : "(null)", want);
    const char *vs2 = kv_version(NULL, NULL, NULL);
    CHECK(vs2 != NULL && strcmp(vs2, want) == 0, "kv_version(NULL, NULL, NULL) = '%s'",
          vs2 ? vs2 : "(null)");
    const char *m = kv_errmsg(NULL);
    CHECK(m != NULL, "kv_errmsg(NULL) is NULL");
}

static void null_handle(void)
{
    t_phase("NULL handle");
    char buf[16];
    size_t len = 5;
    int ranks[4], n = 0;
    uint64_t v = 0;
    CHECK_RC(NULL, kv_put(NULL, "k", 1, "v", 1), KV_EMISUSE, "k", 1, "kv_put(NULL handle)");
    expect_errmsg(NULL, "kv_put(NULL handle)");
    CHECK_RC(NULL, kv_get(NULL, "k", 1, buf, sizeof buf, &len), KV_EMISUSE, "k", 1, "kv_get(NULL handle)");
    CHECK_RC(NULL, kv_del(NULL, "k", 1), KV_EMISUSE, "k", 1, "kv_del(NULL handle)");
    CHECK_RC(NULL, kv_fence(NULL), KV_EMISUSE, "", 0, "kv_fence(NULL handle)");
    CHECK_RC(NULL, kv_locate(NULL, "k", 1, ranks, 4, &n), KV_EMISUSE, "k", 1, "kv_locate(NULL handle)");
    CHECK_RC(NULL, kv_stat(NULL, KV_STAT_RANK, &v), KV_EMISUSE, "", 0, "kv_stat(NULL handle)");
    CHECK_RC(NULL, kv_close(NULL), KV_OK, "", 0, "kv_close(NULL)");
    kv_store *none = NULL;
    CHECK_RC(NULL, kv_close(&none), KV_OK, "", 0, "kv_close(&NULL)");
    CHECK_RC(NULL, kv_open(MPI_COMM_WORLD, "x", MPI_INFO_NULL, NULL), KV_EMISUSE, "", 0,
             "kv_open(kv = NULL)");
    kv_store *kv = (kv_store *)(uintptr_t)0x1;
    CHECK_RC(NULL, kv_open(MPI_COMM_NULL, "x", MPI_INFO_NULL, &kv), KV_EMISUSE, "", 0,
             "kv_open(MPI_COMM_NULL)");
    CHECK(kv == NULL, "kv_open(MPI_COMM_NULL) did not set *kv = NULL");
}

static void bad_arguments(kv_store *kv)
{
    t_phase("bad keys and values");
    size_t big = KV_MAX_KEY_LEN + 16;
    unsigned char *bigkey = t_xmalloc(big);
    memset(bigkey, 'k', big);
    char small[8] = "value";
    unsigned char buf[64];
    size_t len = 0;
    int ranks[4], n = 0;

    /* NULL key */
    CHECK_RC(kv, kv_put(kv, NULL, 1, small, 5), KV_EINVAL, NULL, 0, "kv_put(NULL key)");
    expect_errmsg(kv, "kv_put(NULL key)");
    CHECK_RC(kv, kv_get(kv, NULL, 1, buf, sizeof buf, &len), KV_EINVAL, NULL, 0, "kv_get(NULL key)");
    CHECK_RC(kv, kv_del(kv, NULL, 1), KV_EINVAL, NULL, 0, "kv_del(NULL key)");
    CHECK_RC(kv, kv_locate(kv, NULL, 1, ranks, 4, &n), KV_EINVAL, NULL, 0, "kv_locate(NULL key)");
    /* keylen 0 */
    CHECK_RC(kv, kv_put(kv, "k", 0, small, 5), KV_EINVAL, "k", 0, "kv_put(keylen 0)");
    expect_errmsg(kv, "kv_put(keylen 0)");
    CHECK_RC(kv, kv_get(kv, "k", 0, buf, sizeof buf, &len), KV_EINVAL, "k", 0, "kv_get(keylen 0)");
    CHECK_RC(kv, kv_del(kv, "k", 0), KV_EINVAL, "k", 0, "kv_del(keylen 0)");
    CHECK_RC(kv, kv_locate(kv, "k", 0, ranks, 4, &n), KV_EINVAL, "k", 0, "kv_locate(keylen 0)");
    CHECK_RC(kv, kv_put(kv, NULL, 0, small, 5), KV_EINVAL, NULL, 0, "kv_put(NULL key, keylen 0)");
    /* keylen KV_MAX_KEY_LEN + 1 (valid memory behind it) */
    size_t kl = KV_MAX_KEY_LEN + 1;
    CHECK_RC(kv, kv_put(kv, bigkey, kl, small, 5), KV_EINVAL, bigkey, kl, "kv_put(keylen max+1)");
    CHECK_RC(kv, kv_get(kv, bigkey, kl, buf, sizeof buf, &len), KV_EINVAL, bigkey, kl,
             "kv_get(keylen max+1)");
    CHECK_RC(kv, kv_del(kv, bigkey, kl), KV_EINVAL, bigkey, kl, "kv_del(keylen max+1)");
    CHECK_RC(kv, kv_locate(kv, bigkey, kl, ranks, 4, &n), KV_EINVAL, bigkey, kl,
             "kv_locate(keylen max+1)");
    /* absurd key lengths must be rejected before the bytes are read */
    CHECK_RC(kv, kv_put(kv, "k", (size_t)-1, small, 5), KV_EINVAL, "k", 1, "kv_put(keylen SIZE_MAX)");
    CHECK_RC(kv, kv_get(kv, "k", (size_t)-1, buf, sizeof buf, &len), KV_EINVAL, "k", 1,
             "kv_get(keylen SIZE_MAX)");
    /* value too long: the library must check the length before reading the (small) buffer */
    CHECK_RC(kv, kv_put(kv, "k", 1, small, KV_MAX_VALUE_LEN + 1), KV_EINVAL, "k", 1,
             "kv_put(valuelen max+1)");
    expect_errmsg(kv, "kv_put(valuelen max+1)");
    CHECK_RC(kv, kv_put(kv, "k", 1, small, (size_t)-1), KV_EINVAL, "k", 1, "kv_put(valuelen SIZE_MAX)");
    /* NULL value with a length */
    CHECK_RC(kv, kv_put(kv, "k", 1, NULL, 1), KV_EINVAL, "k", 1, "kv_put(NULL value, len 1)");
    CHECK_RC(kv, kv_put(kv, "k", 1, NULL, 100), KV_EINVAL, "k", 1, "kv_put(NULL value, len 100)");
    /* nothing above changed the store */
    len = 99;
    CHECK_RC(kv, kv_get(kv, "k", 1, buf, sizeof buf, &len), KV_ENOTFOUND, "k", 1,
             "kv_get after rejected puts");
    CHECK(len == 0, "kv_get after rejected puts: valuelen %zu", len);

    /* kv_stat: unknown `what`, NULL value */
    uint64_t v = 0;
    const int bad_what[] = {0, -1, KV_STAT_TABLE_BYTES + 1, 99, 1000, -2147483647 - 1};
    for (size_t i = 0; i < sizeof bad_what / sizeof bad_what[0]; i++) {
        int rc = kv_stat(kv, bad_what[i], &v);
        CHECK(rc == KV_EINVAL, "kv_stat(what=%d): rc %d (%s), expected KV_EINVAL", bad_what[i], rc,
              t_strerror(rc));
    }
    expect_errmsg(kv, "kv_stat(unknown what)");
    int rc = kv_stat(kv, KV_STAT_RANK, NULL);
    CHECK(rc == KV_EINVAL, "kv_stat(value=NULL): rc %d (%s), expected KV_EINVAL", rc, t_strerror(rc));
    for (int what = KV_STAT_RANK; what <= KV_STAT_TABLE_BYTES; what++) {
        rc = kv_stat(kv, what, &v);
        CHECK(rc == KV_OK, "kv_stat(what=%d): rc %d (%s)", what, rc, t_strerror(rc));
    }

    /* Boundary values that are legal: a key of exactly KV_MAX_KEY_LEN bytes, 1-byte key. */
    t_phase("boundary keys");
    kl = KV_MAX_KEY_LEN;
    bigkey[0] = (unsigned char)('A' + t_rank);
    rc = kv_put(kv, bigkey, kl, small, 5);
    CHECK_RC(kv, rc, KV_OK, bigkey, kl, "kv_put(keylen = KV_MAX_KEY_LEN)");
    unsigned char scratch[5 + T_GUARD];
    VERIFY(kv, bigkey, kl, (const unsigned char *)small, 5, scratch);
    rc = kv_locate(kv, bigkey, kl, ranks, 4, &n);
    CHECK_RC(kv, rc, KV_OK, bigkey, kl, "kv_locate(keylen = KV_MAX_KEY_LEN)");
    char onekey[2] = {(char)('a' + t_rank % 26), 0};
    rc = kv_put(kv, onekey, 1, small, 5);
    CHECK_RC(kv, rc, KV_OK, onekey, 1, "kv_put(1-byte key)");
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
    /* Every rank reads every rank's maximal key. */
    for (int r = 0; r < t_size; r++) {
        bigkey[0] = (unsigned char)('A' + r);
        VERIFY(kv, bigkey, kl, (const unsigned char *)small, 5, scratch);
    }
    rc = kv_fence(kv);
    CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
    free(bigkey);
}

static void bad_opens(void)
{
    t_phase("bad names");
    open_expect(MPI_COMM_WORLD, NULL, MPI_INFO_NULL, KV_EINVAL, "kv_open(name NULL)");
    open_expect(MPI_COMM_WORLD, "", MPI_INFO_NULL, KV_EINVAL, "kv_open(name \"\")");
    open_expect(MPI_COMM_WORLD, "a/b", MPI_INFO_NULL, KV_EINVAL, "kv_open(name with '/')");
    open_expect(MPI_COMM_WORLD, "../up", MPI_INFO_NULL, KV_EINVAL, "kv_open(name '../up')");
    open_expect(MPI_COMM_WORLD, "has space", MPI_INFO_NULL, KV_EINVAL, "kv_open(name with space)");
    char longname[KV_MAX_NAME_LEN + 2];
    memset(longname, 'n', sizeof longname);
    longname[KV_MAX_NAME_LEN + 1] = '\0';
    open_expect(MPI_COMM_WORLD, longname, MPI_INFO_NULL, KV_EINVAL, "kv_open(name of KV_MAX_NAME_LEN+1)");
    longname[KV_MAX_NAME_LEN] = '\0';
    open_expect(MPI_COMM_WORLD, longname, MPI_INFO_NULL, KV_OK, "kv_open(name of KV_MAX_NAME_LEN)");
    open_expect(MPI_COMM_WORLD, "Ok.name_with-all.CHARS09", MPI_INFO_NULL, KV_OK,
                "kv_open(name with every allowed kind of character)");

    t_phase("mismatched / partly bad names");
    open_expect(MPI_COMM_WORLD, t_rank == 0 ? "a" : "b", MPI_INFO_NULL, t_size > 1 ? KV_EINVAL : KV_OK,
                "kv_open(rank 0 'a', others 'b')");
    open_expect(MPI_COMM_WORLD, t_rank == t_size - 1 ? "long-name" : "long", MPI_INFO_NULL,
                t_size > 1 ? KV_EINVAL : KV_OK, "kv_open(last rank 'long-name', others 'long')");
    open_expect(MPI_COMM_WORLD, t_rank == 0 ? "x/y" : "xy", MPI_INFO_NULL, KV_EINVAL,
                "kv_open(bad name on rank 0 only)");
    open_expect(MPI_COMM_WORLD, t_rank == t_size - 1 ? "" : "fine", MPI_INFO_NULL, KV_EINVAL,
                "kv_open(empty name on last rank only)");

    t_phase("bad options");
    /* The environment overrides info keys: make sure it does not hide the info under test. */
    unsetenv("FTKV_REPLICAS");
    unsetenv("FTKV_CONSISTENCY");
    unsetenv("FTKV_PROGRESS");
    unsetenv("FTKV_TIMEOUT");
    /* (Open MPI's MPI_Info_set refuses empty or blank values, so those are not tried.) */
    const char *bad_options[][2] = {
        {"ftkv_replicas", "zero"}, {"ftkv_replicas", "0"},     {"ftkv_replicas", "-1"},
        {"ftkv_replicas", "2x"},   {"ftkv_replicas", "99999999999999999999"},
        {"ftkv_consistency", "bogus"}, {"ftkv_progress", "bogus"}, {"ftkv_timeout", "abc"},
        {"ftkv_timeout", "-5"}, {"ftkv_timeout", "0"},
        {"ftkv_replicaz", "2"}, /* unknown ftkv_* key: a typo (docs/configuration.md) */
    };
    for (size_t i = 0; i < sizeof bad_options / sizeof bad_options[0]; i++) {
        MPI_Info info = info_with(bad_options[i][0], bad_options[i][1]);
        char what[128];
        snprintf(what, sizeof what, "kv_open(%s='%s')", bad_options[i][0], bad_options[i][1]);
        open_expect(MPI_COMM_WORLD, "opts", info, KV_EINVAL, what);
        MPI_Info_free(&info);
    }
    {
        /* bad option on one rank only: still agreed */
        MPI_Info info = info_with("ftkv_replicas", t_rank == 0 ? "-1" : "2");
        open_expect(MPI_COMM_WORLD, "opts", info, KV_EINVAL, "kv_open(ftkv_replicas='-1' on rank 0 only)");
        MPI_Info_free(&info);
    }
    {
        /* settings that must agree across ranks (docs/configuration.md) */
        MPI_Info info = info_with("ftkv_replicas", t_rank == 0 ? "2" : "3");
        open_expect(MPI_COMM_WORLD, "opts", info, t_size > 1 ? KV_EINVAL : KV_OK,
                    "kv_open(ftkv_replicas 2 on rank 0, 3 elsewhere)");
        MPI_Info_free(&info);
        info = info_with("ftkv_consistency", t_rank == t_size - 1 ? "sequential" : "fence");
        open_expect(MPI_COMM_WORLD, "opts", info, t_size > 1 ? KV_EINVAL : KV_OK,
                    "kv_open(ftkv_consistency sequential on the last rank only)");
        MPI_Info_free(&info);
    }
    {
        /* legal values that look unusual */
        const char *good[][2] = {{"ftkv_replicas", "64"}, {"ftkv_timeout", "0.5"}, {"ftkv_replicas", " 3 "},
                                 {"ftkv_progress", "inline"}, {"ftkv_consistency", "sequential"}};
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            MPI_Info info = info_with(good[i][0], good[i][1]);
            char what[96];
            snprintf(what, sizeof what, "kv_open(%s='%s')", good[i][0], good[i][1]);
            open_expect(MPI_COMM_WORLD, "opts", info, KV_OK, what);
            MPI_Info_free(&info);
        }
    }
    if (t_level < MPI_THREAD_MULTIPLE) {
        /* a progress thread cannot run below MPI_THREAD_MULTIPLE: kv_open fails (agreed) */
        MPI_Info info = info_with("ftkv_progress", "thread");
        kv_store *kv = (kv_store *)(uintptr_t)0x1;
        int rc = kv_open(MPI_COMM_WORLD, "opts", info, &kv);
        CHECK(rc != KV_OK && kv == NULL, "kv_open(ftkv_progress=thread) below MPI_THREAD_MULTIPLE: rc %d (%s)",
              rc, t_strerror(rc));
        if (rc == KV_OK && kv) kv_close(&kv);
        int lo = rc, hi = rc;
        MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        CHECK(lo == hi, "kv_open(ftkv_progress=thread): not agreed (min %d, max %d)", lo, hi);
        MPI_Info_free(&info);
    }
    {
        /* info keys that are not libftkv's are ignored */
        MPI_Info info = info_with("some_other_library_key", "whatever");
        open_expect(MPI_COMM_WORLD, "opts", info, KV_OK, "kv_open(foreign info key)");
        MPI_Info_free(&info);
    }

    t_phase("environment overrides info");
    {
        MPI_Info info = info_with("ftkv_replicas", "3");
        kv_store *kv = NULL;
        setenv("FTKV_REPLICAS", "1", 1);
        int rc = kv_open(MPI_COMM_WORLD, "envover", info, &kv);
        if (CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_open(info replicas 3, FTKV_REPLICAS=1)") && kv) {
            uint64_t v = STAT(kv, KV_STAT_REPLICAS);
            CHECK(v == 1, "KV_STAT_REPLICAS = %llu: FTKV_REPLICAS=1 should override ftkv_replicas=3",
                  (unsigned long long)v);
            kv_close(&kv);
        }
        unsetenv("FTKV_REPLICAS");
        rc = kv_open(MPI_COMM_WORLD, "envover", info, &kv);
        if (CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_open(info replicas 3)") && kv) {
            uint64_t v = STAT(kv, KV_STAT_REPLICAS);
            uint64_t want = t_size < 3 ? (uint64_t)t_size : 3;
            CHECK(v == want, "KV_STAT_REPLICAS = %llu with ftkv_replicas=3, expected %llu",
                  (unsigned long long)v, (unsigned long long)want);
            kv_close(&kv);
        }
        /* node names of 1..256 bytes (MPI_Info values cannot be that long: environment only) */
        char longnode[300];
        memset(longnode, 'n', 257);
        longnode[257] = '\0';
        setenv("FTKV_NODE", longnode, 1);
        open_expect(MPI_COMM_WORLD, "envover", info, KV_EINVAL, "kv_open(FTKV_NODE of 257 bytes)");
        longnode[256] = '\0';
        setenv("FTKV_NODE", longnode, 1);
        open_expect(MPI_COMM_WORLD, "envover", info, KV_OK, "kv_open(FTKV_NODE of 256 bytes)");
        unsetenv("FTKV_NODE");
        /* a bad value in the environment, on one rank only: agreed KV_EINVAL */
        if (t_rank == 0) setenv("FTKV_REPLICAS", "zero", 1);
        open_expect(MPI_COMM_WORLD, "envover", info, KV_EINVAL, "kv_open(FTKV_REPLICAS=zero on rank 0)");
        unsetenv("FTKV_REPLICAS");
        MPI_Info_free(&info);
    }
}

static void closed_handle(void)
{
    t_phase("closed handle");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "closing", MPI_INFO_NULL, &kv);
    if (!CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_open(closing)") || kv == NULL) return;
    rc = kv_put(kv, "k", 1, "v", 1);
    CHECK_RC(kv, rc, KV_OK, "k", 1, "kv_put");
    kv_store *copy = kv;
    rc = kv_close(&kv);
    CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    CHECK(kv == NULL, "kv_close did not set *kv = NULL");

    char buf[8];
    size_t len = 3;
    int ranks[4], n;
    uint64_t v;
    CHECK_RC(NULL, kv_put(copy, "k", 1, "v", 1), KV_EMISUSE, "k", 1, "kv_put(closed handle)");
    expect_errmsg(NULL, "kv_put(closed handle)");
    CHECK(kv_errmsg(copy) != NULL, "kv_errmsg(closed handle) is NULL");
    CHECK_RC(NULL, kv_get(copy, "k", 1, buf, sizeof buf, &len), KV_EMISUSE, "k", 1, "kv_get(closed handle)");
    CHECK_RC(NULL, kv_del(copy, "k", 1), KV_EMISUSE, "k", 1, "kv_del(closed handle)");
    CHECK_RC(NULL, kv_locate(copy, "k", 1, ranks, 4, &n), KV_EMISUSE, "k", 1, "kv_locate(closed handle)");
    CHECK_RC(NULL, kv_stat(copy, KV_STAT_SIZE, &v), KV_EMISUSE, "", 0, "kv_stat(closed handle)");
    CHECK_RC(NULL, kv_fence(copy), KV_EMISUSE, "", 0, "kv_fence(closed handle)");
    rc = kv_close(&copy);
    CHECK_RC(NULL, rc, KV_EMISUSE, "", 0, "kv_close(closed handle)");
    CHECK(copy == NULL, "kv_close(closed handle) did not set *kv = NULL");

    /* Pointers that never were handles are reported too ("handles are checked"). */
    {
        long fake_storage[64];
        memset(fake_storage, 0x5a, sizeof fake_storage);
        kv_store *fakes[] = {(kv_store *)(void *)fake_storage, (kv_store *)(uintptr_t)0x10,
                             (kv_store *)(void *)kv_strerror(KV_OK)};
        for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++) {
            kv_store *f = fakes[i];
            char what[64];
            snprintf(what, sizeof what, "kv_put(bogus handle #%zu)", i);
            CHECK_RC(NULL, kv_put(f, "k", 1, "v", 1), KV_EMISUSE, "k", 1, what);
            snprintf(what, sizeof what, "kv_get(bogus handle #%zu)", i);
            CHECK_RC(NULL, kv_get(f, "k", 1, buf, sizeof buf, &len), KV_EMISUSE, "k", 1, what);
            snprintf(what, sizeof what, "kv_stat(bogus handle #%zu)", i);
            CHECK_RC(NULL, kv_stat(f, KV_STAT_SIZE, &v), KV_EMISUSE, "", 0, what);
            CHECK(kv_errmsg(f) != NULL, "kv_errmsg(bogus handle #%zu) is NULL", i);
            snprintf(what, sizeof what, "kv_close(bogus handle #%zu)", i);
            CHECK_RC(NULL, kv_close(&f), KV_EMISUSE, "", 0, what);
            CHECK(f == NULL, "kv_close(bogus handle #%zu) did not set *kv = NULL", i);
        }
    }

    /* A new store can be opened afterwards and works (the old copy stays invalid). */
    rc = kv_open(MPI_COMM_WORLD, "closing", MPI_INFO_NULL, &kv);
    if (CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_open(closing, again)") && kv) {
        rc = kv_put(kv, "again", 5, "x", 1);
        CHECK_RC(kv, rc, KV_OK, "again", 5, "kv_put");
        rc = kv_fence(kv);
        CHECK_RC(kv, rc, KV_OK, "", 0, "kv_fence");
        rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    }
}

int main(int argc, char **argv)
{
    /* kv_strerror and kv_version are usable before MPI_Init (lifecycle.c tests more of this). */
    CHECK(kv_strerror(KV_EINVAL) != NULL, "kv_strerror before MPI_Init is NULL");
    t_init(&argc, &argv, "errors");

    strings_and_version();
    null_handle();

    t_phase("open");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "errors", MPI_INFO_NULL, &kv);
    if (CHECK_RC(NULL, rc, KV_OK, "errors", 6, "kv_open") && kv != NULL) {
        bad_arguments(kv);
        rc = kv_close(&kv);
        CHECK_RC(NULL, rc, KV_OK, "", 0, "kv_close");
    }

    bad_opens();
    closed_handle();
    strings_and_version(); /* still fine after all of the above */
    return t_finish();
}
