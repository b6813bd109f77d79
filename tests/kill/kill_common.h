/*
 * kill_common.h - what the kill tests in tests/kill share: a monotonic clock, numeric
 * environment knobs, and how they follow the documented protocol after a failure: a call that
 * returns KV_EPROCFAILED because the store moved to a new view (the epoch moved on) reports that
 * view change once, and is retried. kv_stat may itself be the reporting call (when the first call
 * failed for another reason, e.g. a key every holder of which died): the epoch comparison counts
 * the change either way.
 */
#ifndef FTKV_TESTS_KILL_COMMON_H
#define FTKV_TESTS_KILL_COMMON_H
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include "ftkv.h"

/* Seconds, monotonic. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A numeric environment knob (dflt when unset or empty). */
static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static uint64_t seen_epoch; /* the epoch of the last view change counted */
static int reports;         /* view changes reported to this rank */

/* Counts a view change if the epoch moved on since the last one; returns whether it did (the
 * caller then retries its call). */
static int view_changed(kv_store *kv) {
    uint64_t e = 0;
    int rc = kv_stat(kv, KV_STAT_EPOCH, &e);
    if (rc == KV_EPROCFAILED) rc = kv_stat(kv, KV_STAT_EPOCH, &e);
    if (rc != KV_OK || e == seen_epoch) return 0;
    seen_epoch = e;
    reports++;
    return 1;
}
#endif
