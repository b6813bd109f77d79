/*
 * closememory.c - kv_close gives a store's memory back at once, even while another thread that
 * used the handle still runs, and that thread's next call on the closed handle gets KV_EMISUSE.
 *
 * Each thread remembers its last handle so that calls on it skip the handle registry's lock
 * (Sources/FTKVCABI/Handles.swift); that memory keeps the store's object alive after kv_close
 * until the thread's next call on another handle, or its exit. So kv_close releases the store's
 * tables itself. Each rank writes 48 MiB, fences (with 2 copies a rank holds about 96 MiB), a
 * second thread reads a key and stays alive; the main thread closes the store and checks that its
 * resident memory fell by at least the 48 MiB of its own records. Then the second thread calls on
 * the closed handle (KV_EMISUSE), a new store opens (the handle's registry slot is reused) and the
 * old handle still gets KV_EMISUSE while the new one works, from both threads.
 * Skipped (passes) without MPI_THREAD_MULTIPLE.
 */
//@case 2
//@case 3 FTKV_REPLICAS=1
//@case 2 FTKV_PROGRESS=inline
#include "common.h"

#include <pthread.h>

#define KEYS 12288
#define VLEN 4096

static kv_store *old_kv, *new_kv, *old_value; /* old_value: old_kv's value (kv_close clears old_kv) */
static pthread_mutex_t step_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t step_cond = PTHREAD_COND_INITIALIZER;
static int main_step;     /* 1: the store is closed and measured; 2: a new store is open */
static int helper_step;   /* 1: read before the close; 2: checked the closed handle; 3: done */
static int helper_failures;

static void wait_step(int *step, int want)
{
    pthread_mutex_lock(&step_lock);
    while (*step < want) pthread_cond_wait(&step_cond, &step_lock);
    pthread_mutex_unlock(&step_lock);
}

static void set_step(int *step, int s)
{
    pthread_mutex_lock(&step_lock);
    *step = s;
    pthread_cond_broadcast(&step_cond);
    pthread_mutex_unlock(&step_lock);
}

static void helper_check(int ok, const char *what, int rc)
{
    if (ok) return;
    printf("[closememory rank %d] FAIL helper thread: %s (rc %d: %s)\n", t_rank, what, rc, t_strerror(rc));
    fflush(stdout);
    __atomic_add_fetch(&helper_failures, 1, __ATOMIC_RELAXED);
}

static void *helper(void *arg)
{
    (void)arg;
    char key[64], buf[VLEN];
    size_t len = 0;
    int klen = sprintf(key, "cm/%d/%d", t_rank, 7);
    int rc = kv_get(old_value, key, (size_t)klen, buf, sizeof buf, &len);
    helper_check(rc == KV_OK && len == VLEN, "kv_get before the close", rc);
    set_step(&helper_step, 1);
    wait_step(&main_step, 1); /* the main thread has closed the store and measured */
    rc = kv_get(old_value, key, (size_t)klen, buf, sizeof buf, &len);
    helper_check(rc == KV_EMISUSE, "kv_get on the closed handle should be KV_EMISUSE", rc);
    set_step(&helper_step, 2);
    wait_step(&main_step, 2); /* a new store is open */
    rc = kv_get(old_value, key, (size_t)klen, buf, sizeof buf, &len);
    helper_check(rc == KV_EMISUSE, "kv_get on the old handle after a new open should be KV_EMISUSE", rc);
    rc = kv_put(new_kv, key, (size_t)klen, "x", 1);
    helper_check(rc == KV_OK, "kv_put on the new handle", rc);
    rc = kv_get(new_kv, key, (size_t)klen, buf, sizeof buf, &len);
    helper_check(rc == KV_OK && len == 1 && buf[0] == 'x', "kv_get of its own put on the new handle", rc);
    set_step(&helper_step, 3);
    return NULL;
}

static long rss_kb(void) { return t_proc_kb("/proc/self/status", "VmRSS:"); }

int main(int argc, char **argv)
{
    t_init(&argc, &argv, "closememory");
    if (!t_have_multiple()) {
        if (t_rank == 0) printf("[closememory] SKIP: needs MPI_THREAD_MULTIPLE\n");
        return t_finish();
    }
    old_kv = t_open("closememory");
    if (old_kv == NULL) return t_finish();
    t_phase("write and fence");
    static unsigned char val[VLEN];
    char key[64];
    for (int i = 0; i < KEYS; i++) {
        int klen = sprintf(key, "cm/%d/%d", t_rank, i);
        t_fill(val, VLEN, t_tag((uint64_t)t_rank, (uint64_t)i, 3, 3));
        CHECK_RC(old_kv, kv_put(old_kv, key, (size_t)klen, val, VLEN), KV_OK, key, (size_t)klen, "kv_put");
    }
    CHECK_RC(old_kv, kv_fence(old_kv), KV_OK, "", 0, "kv_fence");

    t_phase("close while another thread holds the handle");
    old_value = old_kv;
    pthread_t th;
    if (pthread_create(&th, NULL, helper, NULL) != 0) {
        CHECK(0, "pthread_create failed");
        return t_finish();
    }
    wait_step(&helper_step, 1);
    long before = rss_kb();
    CHECK_RC(NULL, kv_close(&old_kv), KV_OK, "", 0, "kv_close");
    long after = rss_kb();
    long own_kb = (long)KEYS * VLEN / 1024;
    printf("[closememory rank %d] resident memory %ld kB before kv_close, %ld kB after (own records %ld kB)\n",
           t_rank, before, after, own_kb);
    CHECK(before > 0 && after > 0, "cannot read VmRSS");
    CHECK(before - after >= own_kb, "kv_close gave back %ld kB, less than the %ld kB of this rank's own records",
          before - after, own_kb);
    set_step(&main_step, 1);
    wait_step(&helper_step, 2);

    t_phase("a new store in the old handle's registry slot");
    new_kv = t_open("closememory2");
    if (new_kv == NULL) return t_finish();
    set_step(&main_step, 2);
    wait_step(&helper_step, 3);
    pthread_join(th, NULL);
    CHECK(helper_failures == 0, "%d failures on the helper thread", helper_failures);
    char buf[VLEN];
    size_t len = 0;
    int klen = sprintf(key, "cm/%d/%d", t_rank, 7);
    int rc = kv_get(old_value, key, (size_t)klen, buf, sizeof buf, &len);
    CHECK(rc == KV_EMISUSE, "kv_get on the old handle from the main thread: rc %d (%s), expected KV_EMISUSE", rc, t_strerror(rc));
    CHECK_RC(new_kv, kv_get(new_kv, key, (size_t)klen, buf, sizeof buf, &len), KV_OK, key, (size_t)klen, "kv_get on the new handle");
    CHECK(len == 1 && buf[0] == 'x', "the new store's key reads back %zu bytes", len);
    CHECK_RC(NULL, kv_close(&new_kv), KV_OK, "", 0, "kv_close of the new store");
    return t_finish();
}
