/*
 * hugepages.c - ftkv_huge_pages decides whether the store's tables ask for transparent huge
 * pages, and the data is the same either way.
 *
 * Each rank writes 24 MB, fences and reads every key of every rank back. Then it reads its
 * process's AnonHugePages (/proc/self/smaps_rollup): nothing else in the process asks for huge
 * pages (MADV_HUGEPAGE), so with FTKV_HUGE_PAGES=no it must be 0, and by default (yes) above 0
 * wherever the kernel offers them (transparent_hugepage not "never").
 */
//@case 2
//@case 2 FTKV_HUGE_PAGES=no
//@case 3 FTKV_HUGE_PAGES=no TEST_THREAD_LEVEL=single
#include "common.h"

#define KEYS 24000
#define VLEN 1000

static long anon_huge_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (f == NULL) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "AnonHugePages:", 14) == 0) kb = strtol(line + 14, NULL, 10);
    fclose(f);
    return kb;
}

static int thp_offered(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f == NULL) return 0;
    char line[128] = "";
    if (fgets(line, sizeof line, f) == NULL) line[0] = 0;
    fclose(f);
    return strstr(line, "[never]") == NULL && line[0] != 0;
}

static size_t key_of(int r, int i, char *key) { return (size_t)sprintf(key, "hp/%d/%d", r, i); }

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "hugepages");
    kv_store *kv = t_open("hugepages");
    if (kv == NULL) return t_finish();
    int off = t_env_is("FTKV_HUGE_PAGES", "no");
    unsigned char val[VLEN], scratch[VLEN + T_GUARD];
    char key[64];
    t_phase("put and fence");
    for (int i = 0; i < KEYS; i++) {
        size_t klen = key_of(t_rank, i, key);
        t_fill(val, VLEN, t_tag((uint64_t)t_rank, (uint64_t)i, 9, 9));
        CHECK_RC(kv, kv_put(kv, key, klen, val, VLEN), KV_OK, key, klen, "kv_put");
    }
    CHECK_RC(kv, kv_fence(kv), KV_OK, "", 0, "kv_fence");
    t_phase("read back");
    for (int r = 0; r < t_size; r++)
        for (int i = 0; i < KEYS; i++) {
            size_t klen = key_of(r, i, key);
            t_fill(val, VLEN, t_tag((uint64_t)r, (uint64_t)i, 9, 9));
            VERIFY(kv, key, klen, val, VLEN, scratch);
        }
    t_phase("huge pages");
    long kb = anon_huge_kb();
    printf("[hugepages rank %d] ftkv_huge_pages %s: AnonHugePages %ld kB, tables %.1f MiB\n", t_rank,
           off ? "no" : "yes", kb, STAT(kv, KV_STAT_TABLE_BYTES) / 1048576.0);
    CHECK(kb >= 0, "cannot read AnonHugePages from /proc/self/smaps_rollup");
    if (off) CHECK(kb == 0, "ftkv_huge_pages=no, yet %ld kB of huge pages", kb);
    else if (thp_offered()) CHECK(kb > 0, "huge pages offered by the kernel, yet the store has none");
    CHECK_RC(kv, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
