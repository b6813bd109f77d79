/*
 * cas_kill.c - kv_cas stays linearizable when the primary of a contended key is SIGKILLed.
 *
 * Run under `mpirun --enable-recovery` (tests/run-all.sh) with CAS_REPLICAS copies per key and
 * CAS_VICTIMS (comma-separated ranks) that die. There is one counter key per rank, whose primary
 * is that rank. Every rank increments the counters round robin with get + kv_cas loops; a counter
 * value is "COUNT WRITER SEQ", so each value names the swap that wrote it. Each rank appends every
 * swap that returned KV_OK ("S key count") to its own log file (CAS_LOG_DIR), and every swap whose
 * outcome the library left open ("A key count": KV_EPROCFAILED or KV_EREMOTE, which the header
 * says may have taken effect) unless a read resolves it. A victim kills itself with SIGKILL after
 * CAS_KILL_AFTER of its own swaps (its log is complete: it dies between two of its calls, often
 * while its progress thread serves other ranks' swaps of its counter as their primary).
 * The survivors go on until each made CAS_INCREMENTS swaps and at least a quarter of them after
 * the view change, then fence, and the lowest survivor checks every log against the counters:
 *  - no count of a counter was written by two successful swaps (two swaps that saw the same value
 *    cannot both succeed: the core of linearizability);
 *  - every successful swap, the victims' included, is at or below the counter's final count: no
 *    acknowledged swap was lost with the primary (a lost one would have its count reused);
 *  - every count from 1 to the final one was written by exactly one logged swap, successful or
 *    left open: nothing appeared that nobody wrote;
 *  - every survivor reads the same final value of every counter, and it names a logged swap.
 * Each survivor prints "cas_kill: rank N PASS" or FAIL lines; the driver checks every survivor.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "ftkv.h"
#include "kill_common.h"

#define MAX_RANKS 64
#define MAX_COUNT 100000

static int rank, size, failures, logfd = -1;

static void fail(const char *fmt, const char *detail) {
    printf("cas_kill: rank %d FAIL ", rank);
    printf(fmt, detail);
    printf("\n");
    fflush(stdout);
    failures++;
}

/* One line, written at once: the page cache keeps it when the process is killed right after. */
static void log_line(char kind, int counter, long count) {
    char line[64];
    int n = snprintf(line, sizeof line, "%c %d %ld\n", kind, counter, count);
    if (write(logfd, line, (size_t)n) != n) fail("%s", "cannot write the log");
}

/* The counter's value: count, writer and seq (count 0 when absent). rc of the get. */
static int read_counter(kv_store *kv, const char *key, long *count, int *writer, long *seq, char *raw, size_t cap) {
    size_t len = 0;
    int rc = kv_get(kv, key, strlen(key), raw, cap - 1, &len);
    *count = 0, *writer = -1, *seq = 0;
    raw[rc == KV_OK ? len : 0] = '\0';
    if (rc == KV_OK && sscanf(raw, "%ld %d %ld", count, writer, seq) != 3) fail("unparsable counter value '%s'", raw);
    return rc;
}

int main(int argc, char **argv) {
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const long increments = env_long("CAS_INCREMENTS", 300), kill_after = env_long("CAS_KILL_AFTER", 60);
    const char *dir = getenv("CAS_LOG_DIR");
    int victim[MAX_RANKS] = {0};
    for (const char *v = getenv("CAS_VICTIMS"); v && *v;) {
        long r = strtol(v, (char **)&v, 10);
        if (r >= 0 && r < MAX_RANKS) victim[r] = 1;
        while (*v == ',') v++;
    }
    if (size < 3 || size > MAX_RANKS || !dir) {
        if (rank == 0) printf("cas_kill: needs 3..%d ranks and CAS_LOG_DIR\n", MAX_RANKS);
        MPI_Finalize();
        return 1;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/cas.%d.log", dir, rank);
    logfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (logfd < 0) { fail("cannot create the log %s", path); MPI_Finalize(); return 1; }

    MPI_Info info;
    MPI_Info_create(&info);
    char rbuf[16];
    snprintf(rbuf, sizeof rbuf, "%ld", env_long("CAS_REPLICAS", 2));
    MPI_Info_set(info, "ftkv_replicas", rbuf);
    MPI_Info_set(info, "ftkv_heartbeat", "0.1");
    MPI_Info_set(info, "ftkv_suspect_after", "0.5");
    kv_store *kv = NULL;
    int rc = kv_open(MPI_COMM_WORLD, "cas-kill", info, &kv);
    MPI_Info_free(&info);
    if (rc != KV_OK) { fail("kv_open: %s", kv_errmsg(NULL)); MPI_Finalize(); return 1; }

    /* Counter c's key has rank c as its primary. */
    static char keys[MAX_RANKS][32];
    for (int c = 0; c < size; c++) {
        for (int i = 0;; i++) {
            int ranks[8], n = 0;
            snprintf(keys[c], sizeof keys[c], "counter/%d/%d", c, i);
            if (kv_locate(kv, keys[c], strlen(keys[c]), ranks, 8, &n) == KV_OK && n > 0 && ranks[0] == c) break;
        }
    }
    if (rank == 0) {
        printf("cas_kill: %d ranks, %ld copies, victims %s, %ld increments each\n", size, env_long("CAS_REPLICAS", 2),
               getenv("CAS_VICTIMS") ? getenv("CAS_VICTIMS") : "none", increments);
        fflush(stdout);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    long done = 0, after_change = 0, seq = 0, open_outcomes = 0;
    double deadline = now() + 60;
    char raw[64], next[64];
    const int expect_change = getenv("CAS_VICTIMS") != NULL;
    for (int c = rank; (done < increments || (expect_change && (reports == 0 || after_change < increments / 4)))
                       && now() < deadline; c = (c + 1) % size) {
        if (victim[rank] && done == kill_after) {
            printf("cas_kill: rank %d killing itself with SIGKILL after %ld swaps\n", rank, done);
            fflush(stdout);
            raise(SIGKILL);
        }
        for (;;) {
            long count = 0, s = 0;
            int writer = -1;
            rc = read_counter(kv, keys[c], &count, &writer, &s, raw, sizeof raw);
            if (rc == KV_EPROCFAILED && view_changed(kv)) continue;
            if (rc != KV_OK && rc != KV_ENOTFOUND) { fail("kv_get of a counter: %s", kv_errmsg(kv)); break; }
            seq++;
            snprintf(next, sizeof next, "%ld %d %ld", count + 1, rank, seq);
            int swapped = 0;
            rc = kv_cas(kv, keys[c], strlen(keys[c]), count == 0 ? NULL : raw, count == 0 ? 0 : strlen(raw), next,
                        strlen(next), &swapped);
            if (rc == KV_OK) {
                if (!swapped) continue;
                log_line('S', c, count + 1);
                done++;
                if (reports > 0) after_change++;
                break;
            }
            if (rc != KV_EPROCFAILED && rc != KV_EREMOTE) { fail("kv_cas: %s", kv_errmsg(kv)); break; }
            /* The outcome is open: a read after the view change tells, unless the counter moved on. */
            if (rc == KV_EPROCFAILED) view_changed(kv);
            long now_count = 0, now_seq = 0;
            int now_writer = -1;
            char again[64];
            int grc = read_counter(kv, keys[c], &now_count, &now_writer, &now_seq, again, sizeof again);
            if (grc == KV_EPROCFAILED && view_changed(kv))
                grc = read_counter(kv, keys[c], &now_count, &now_writer, &now_seq, again, sizeof again);
            if (grc == KV_OK && now_writer == rank && now_seq == seq) {
                log_line('S', c, count + 1); /* it did take effect, and is still the value */
                done++;
                if (reports > 0) after_change++;
                break;
            }
            log_line('A', c, count + 1);
            open_outcomes++;
        }
    }
    if (now() >= deadline) fail("%s", "the workload did not finish within 60 s");
    if (expect_change && reports == 0) fail("%s", "no view change was reported");

    /* Every survivor: the fence (retried after a view change), then the check on kv_comm. */
    for (int attempt = 0; attempt < 8; attempt++) {
        rc = kv_fence(kv);
        if (rc != KV_EPROCFAILED) break;
        view_changed(kv);
    }
    if (rc != KV_OK) fail("kv_fence: %s", kv_errmsg(kv));
    MPI_Comm comm;
    if ((rc = kv_comm(kv, &comm)) != KV_OK) { fail("kv_comm: %s", kv_errmsg(kv)); comm = MPI_COMM_NULL; }
    long finals[MAX_RANKS];
    char finalraw[MAX_RANKS][64];
    memset(finalraw, 0, sizeof finalraw);
    for (int c = 0; c < size; c++) {
        long s;
        int w;
        rc = read_counter(kv, keys[c], &finals[c], &w, &s, finalraw[c], sizeof finalraw[c]);
        if (rc != KV_OK) fail("final kv_get of a counter: %s", kv_errmsg(kv));
    }
    close(logfd);
    int lowest = 0, verdict = 0;
    if (comm != MPI_COMM_NULL) {
        /* Every survivor read the same final values. */
        char all[MAX_RANKS * 64];
        memset(all, 0, sizeof all);
        for (int c = 0; c < size; c++) memcpy(all + 64 * c, finalraw[c], 64);
        char *from0 = malloc(sizeof all);
        memcpy(from0, all, sizeof all);
        MPI_Bcast(from0, (int)sizeof all, MPI_CHAR, 0, comm);
        if (memcmp(from0, all, sizeof all) != 0) fail("%s", "survivors read different final counter values");
        free(from0);
        int crank;
        MPI_Comm_rank(comm, &crank);
        lowest = crank == 0;
    }
    if (lowest) {
        /* written[c][count]: how many logged swaps wrote it (successes), open[c][count]: left open. */
        static unsigned char written[MAX_RANKS][MAX_COUNT + 1], open_[MAX_RANKS][MAX_COUNT + 1];
        long successes = 0, opens = 0, max_success[MAX_RANKS] = {0};
        for (int r = 0; r < size; r++) {
            snprintf(path, sizeof path, "%s/cas.%d.log", dir, r);
            FILE *f = fopen(path, "r");
            if (!f) { fail("cannot read the log %s", path); continue; }
            char kind;
            int c;
            long count;
            while (fscanf(f, " %c %d %ld", &kind, &c, &count) == 3) {
                if (c < 0 || c >= size || count < 1 || count > MAX_COUNT) { fail("bad log line in %s", path); break; }
                if (kind == 'S') {
                    if (written[c][count]++ == 1) {
                        char what[128];
                        snprintf(what, sizeof what, "counter %d: count %ld was written by two successful swaps", c, count);
                        fail("%s", what);
                    }
                    if (count > max_success[c]) max_success[c] = count;
                    successes++;
                } else {
                    open_[c][count] = 1;
                    opens++;
                }
            }
            fclose(f);
        }
        for (int c = 0; c < size; c++) {
            char what[160];
            if (max_success[c] > finals[c]) {
                snprintf(what, sizeof what, "counter %d: a swap to count %ld succeeded, but the counter reads %ld: lost",
                         c, max_success[c], finals[c]);
                fail("%s", what);
            }
            for (long k = 1; k <= finals[c] && k <= MAX_COUNT; k++) {
                if (!written[c][k] && !open_[c][k]) {
                    snprintf(what, sizeof what, "counter %d: count %ld (of %ld) was written by no logged swap", c, k, finals[c]);
                    fail("%s", what);
                    break;
                }
            }
        }
        printf("cas_kill: checked %ld successful and %ld open swaps on %d counters; finals", successes, opens, size);
        for (int c = 0; c < size; c++) printf(" %ld", finals[c]);
        printf("\n");
        verdict = failures;
    }
    if (comm != MPI_COMM_NULL) MPI_Bcast(&verdict, 1, MPI_INT, 0, comm);
    if (verdict && !lowest) failures++;
    if ((rc = kv_close(&kv)) != KV_OK) fail("kv_close: %s", kv_errmsg(NULL));
    printf("cas_kill: rank %d %s (%ld swaps, %ld after the view change, %ld left open, %d view change%s reported)\n", rank,
           failures ? "FAIL" : "PASS", done, after_change, open_outcomes, reports, reports == 1 ? "" : "s");
    fflush(stdout);
    MPI_Finalize();
    return failures ? 1 : 0;
}
