/*
 * hugepages.c - ftkv_huge_pages decides whether the store's tables ask for transparent huge
 * pages, and the data is the same either way.
 *
 * Each rank writes 24 MB, fences and reads every key of every rank back. Then it reads its
 * process's AnonHugePages (/proc/self/smaps_rollup): nothing else in the process asks for huge
 * pages (MADV_HUGEPAGE), so with FTKV_HUGE_PAGES=no it must be 0, and with yes above 0 wherever
 * the kernel offers them (transparent_hugepage not "never"). The default, auto, must be no on
 * a virtual machine whose balloon reports free pages to its host (read here from sysfs
 * independently of the library) and yes elsewhere.
 */
//@case 2
//@case 2 FTKV_HUGE_PAGES=yes
//@case 2 FTKV_HUGE_PAGES=no
//@case 3 FTKV_HUGE_PAGES=no TEST_THREAD_LEVEL=single
#include "common.h"
#include <dirent.h>

#define KEYS 24000
#define VLEN 1000

static long anon_huge_kb(void) { return t_proc_kb("/proc/self/smaps_rollup", "AnonHugePages:"); }

static int thp_offered(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f == NULL) return 0;
    char line[128] = "";
    if (fgets(line, sizeof line, f) == NULL) line[0] = 0;
    fclose(f);
    return strstr(line, "[never]") == NULL && line[0] != 0;
}

/* virtio-balloon free page reporting: the kernel's page_reporting module and a bound balloon
 * device whose features file (one character per feature bit) has bit 5 set. */
static int free_page_reporting(void)
{
    DIR *probe = opendir("/sys/module/page_reporting");
    if (probe == NULL) return 0;
    closedir(probe);
    const char *driver = "/sys/bus/virtio/drivers/virtio_balloon";
    DIR *d = opendir(driver);
    if (d == NULL) return 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "virtio", 6) != 0) continue;
        char path[512], bits[256] = "";
        snprintf(path, sizeof path, "%s/%s/features", driver, e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) continue;
        if (fgets(bits, sizeof bits, f) != NULL && strlen(bits) > 5 && bits[5] == '1') found = 1;
        fclose(f);
    }
    closedir(d);
    return found;
}

static size_t key_of(int r, int i, char *key) { return (size_t)sprintf(key, "hp/%d/%d", r, i); }

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "hugepages");
    kv_store *kv = t_open("hugepages");
    if (kv == NULL) return t_finish();
    const char *setting = getenv("FTKV_HUGE_PAGES") ? getenv("FTKV_HUGE_PAGES") : "auto";
    int off = t_env_is("FTKV_HUGE_PAGES", "no") || (!t_env_is("FTKV_HUGE_PAGES", "yes") && free_page_reporting());
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
    printf("[hugepages rank %d] ftkv_huge_pages %s (expected: %s): AnonHugePages %ld kB, tables %.1f MiB\n",
           t_rank, setting, off ? "no" : "yes", kb, STAT(kv, KV_STAT_TABLE_BYTES) / 1048576.0);
    CHECK(kb >= 0, "cannot read AnonHugePages from /proc/self/smaps_rollup");
    if (off) CHECK(kb == 0, "ftkv_huge_pages=%s, expected no huge pages, yet %ld kB", setting, kb);
    else if (thp_offered()) CHECK(kb > 0, "ftkv_huge_pages=%s and huge pages offered by the kernel, yet the store has none", setting);
    CHECK_RC(kv, kv_close(&kv), KV_OK, "", 0, "kv_close");
    return t_finish();
}
