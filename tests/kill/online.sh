#!/usr/bin/env bash
# tests/kill/online.sh - one run of tests/kill/online.c: N ranks under mpirun --enable-recovery,
# rank VICTIM SIGKILLed from outside after a random delay (DELAY_MS, or random in 0..MAX_DELAY_MS),
# every survivor must print its PASS line, and nothing may be left running. With STOPPED=1 the
# victim is stopped (SIGSTOP) instead, for STOP_S seconds (default 3, past the suspicion time),
# then continued, and must report that it was excluded.
#
#   tests/kill/online.sh BINARY NRANKS VICTIM [REPLICAS] [MAX_DELAY_MS]
# VICTIM is one rank or a comma-separated list, killed at the same moment (kill -9 of all), or one
# after the other with KILL_GAP_MS between kills (each view change and re-replication done by
# the next: sequential failures, down to a single survivor).
# With FAULT=die-deciding|die-rereplicating and FAULT_RANK=R, rank R also dies, by the library's
# test fault (FTKV_TEST_FAULT) during the view change that follows the kill: as the coordinator
# after telling one survivor its decision, or in the middle of re-replication. It counts as a
# victim for the program and must print the fault's line.
# Each step sleeps ONLINE_STEP_MS (default: enough that the steps last twice MAX_DELAY_MS), so the
# kill lands inside the workload on any machine; a run whose first failure no step saw (the
# survivors had finished) fails, unless ONLINE_LATE_OK=1.
# Prints one summary line: "online: N ranks, victim V killed after D ms: PASS|FAIL ...".
set -u
bin="$1" n="$2" victim="$3" replicas="${4:-2}" max_delay="${5:-1500}"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../mpi-env.sh"
dir="$(mktemp -d)"
out="$dir/out"
delay="${DELAY_MS:-$(( (RANDOM * 32768 + RANDOM) % (max_delay + 1) ))}"
steps="${ONLINE_STEPS:-40}"
step_ms="${ONLINE_STEP_MS:-$(( (2 * max_delay + steps - 1) / steps ))}"

# Open MPI 4.1's MPI_Finalize runtime barrier can hang on a dead member: skipped (see run-all.sh).
stopped="${STOPPED:-0}"
# ONLINE_COMMIT=1: the survivors commit at the end, into this job's own directory, and a second
# job on VERIFY_RANKS ranks (default 3) restarts from it and checks everything.
export FTKV_DIR="$dir/data" ONLINE_COMMIT="${ONLINE_COMMIT:-0}"
fault_args=()
# FTKV_TEST_BATCH_BYTES (if set): smaller fence batches and re-replication messages, so records
# straddle many of them.
[ -n "${FTKV_TEST_BATCH_BYTES:-}" ] && { export FTKV_TEST_BATCH_BYTES; fault_args=(-x FTKV_TEST_BATCH_BYTES); }
# FTKV_RECOVERY_RESERVE=on (if set): the copies restored after the kill land in room kept ahead.
[ -n "${FTKV_RECOVERY_RESERVE:-}" ] && { export FTKV_RECOVERY_RESERVE; fault_args+=(-x FTKV_RECOVERY_RESERVE); }
all_victims="$victim"
if [ -n "${FAULT:-}" ]; then
    export FTKV_TEST_FAULT="$FAULT" FTKV_TEST_FAULT_RANK="$FAULT_RANK"
    fault_args+=(-x FTKV_TEST_FAULT -x FTKV_TEST_FAULT_RANK)
    all_victims="$victim,$FAULT_RANK"
fi
OMPI_MCA_async_mpi_finalize=1 ONLINE_VICTIM="$all_victims" ONLINE_REPLICAS="$replicas" ONLINE_DIR="$dir" ONLINE_STOPPED="$stopped" \
    ONLINE_RANKS_PER_NODE="${ONLINE_RANKS_PER_NODE:-0}" ONLINE_STEPS="$steps" ONLINE_STEP_MS="$step_ms" \
    ftkv_mpirun "$n" "${JOB_TIMEOUT:-120}" --enable-recovery -x ONLINE_VICTIM -x ONLINE_REPLICAS -x ONLINE_DIR -x ONLINE_STEPS -x ONLINE_STEP_MS \
    -x ONLINE_STOPPED -x ONLINE_RANKS_PER_NODE -x ONLINE_COMMIT -x FTKV_DIR "${fault_args[@]}" \
    "$bin" >"$out" 2>&1 &
job=$!
IFS=, read -r -a victims <<<"$victim"
is_victim() { local v; for v in "${victims[@]}"; do [ "$v" -eq "$1" ] && return 0; done; return 1; }
# The victims' PIDs, once they are written (once the store is open on every rank).
pids=()
for v in "${victims[@]}"; do
    for _ in $(seq 1 600); do
        [ -s "$dir/pid.$v" ] && break
        sleep 0.05
    done
    p="$(cat "$dir/pid.$v" 2>/dev/null || true)"
    [ -n "$p" ] && pids+=("$p")
done
pid="${pids[*]}"
if [ "${#pids[@]}" -eq "${#victims[@]}" ]; then
    sleep "$(awk -v d="$delay" 'BEGIN { printf "%.3f", d / 1000 }')"
    if [ "$stopped" = 1 ]; then
        kill -STOP "${pids[@]}" 2>/dev/null || true
        sleep "${STOP_S:-3}"
        kill -CONT "${pids[@]}" 2>/dev/null || true
    elif [ -n "${KILL_GAP_MS:-}" ]; then
        for p in "${pids[@]}"; do
            kill -9 "$p" 2>/dev/null || true
            sleep "$(awk -v d="$KILL_GAP_MS" 'BEGIN { printf "%.3f", d / 1000 }')"
        done
    else
        kill -9 "${pids[@]}" 2>/dev/null || true
    fi
else
    pid=""
fi
wait "$job"
rc=$?
ok=1
why=""
[ -n "$pid" ] || { ok=0; why+=" the victim never started;"; }
for ((s = 0; s < n; s++)); do
    is_victim "$s" && continue
    [ -n "${FAULT:-}" ] && [ "$s" -eq "$FAULT_RANK" ] && continue
    grep -q "^online: rank $s PASS" "$out" || { ok=0; why+=" survivor $s did not pass;"; }
done
if [ -n "${FAULT:-}" ]; then
    grep -q "^ftkv: test fault $FAULT.*rank $FAULT_RANK kills itself" "$out" \
        || { ok=0; why+=" rank $FAULT_RANK did not die by $FAULT;"; }
fi
grep -qE 'rank [0-9]+ FAIL' "$out" && { ok=0; why+=" FAIL lines;"; }
[ "$rc" -eq 0 ] || { ok=0; why+=" mpirun exited with $rc;"; }
if [ "$stopped" = 1 ]; then
    for v in "${victims[@]}"; do
        grep -q "^online: rank $v excluded after being stopped" "$out" || { ok=0; why+=" stopped victim $v did not find itself excluded;"; }
    done
fi
if [ "$ONLINE_COMMIT" = 1 ] && [ "$ok" -eq 1 ]; then
    ONLINE_VERIFY=1 ftkv_mpirun "${VERIFY_RANKS:-3}" 120 -x ONLINE_VERIFY -x FTKV_DIR "$bin" >"$dir/verify" 2>&1
    vrc=$?
    cat "$dir/verify" >>"$out"
    grep -q "^online: verify PASS" "$dir/verify" && [ "$vrc" -eq 0 ] \
        || { ok=0; why+=" the restart from the survivors' commit did not verify (exit $vrc);"; }
fi
how=killed
[ -n "${KILL_GAP_MS:-}" ] && how="killed one by one, ${KILL_GAP_MS} ms apart,"
[ "$stopped" = 1 ] && how="stopped ${STOP_S:-3} s"
[ -n "${FAULT:-}" ] && how+=" (and rank $FAULT_RANK by $FAULT)"
first_survivor=0
while is_victim "$first_survivor" || { [ -n "${FAULT:-}" ] && [ "$first_survivor" -eq "$FAULT_RANK" ]; }; do
    first_survivor=$((first_survivor + 1))
done
summary="$(grep -m1 "^online: rank $first_survivor view change" "$out" | sed 's/^online: //')"
seen_at="$(sed -n 's/.*view change reported during step \(-\{0,1\}[0-9]*\).*/\1/p' <<<"$summary")"
if [ "${ONLINE_LATE_OK:-0}" != 1 ] && [ "${seen_at:--1}" -lt 0 ]; then
    ok=0
    why+=" no step saw the failure (the survivors had finished their $steps steps): the run did not test recovery under load;"
fi
[ "$ONLINE_COMMIT" = 1 ] && summary+="; $(grep -m1 '^online: verify:' "$out" | sed 's/^online: //')"
if [ "$ok" -eq 1 ]; then
    echo "online: $n ranks, $replicas copies, victim $victim $how after $delay ms: PASS ($summary)"
else
    echo "online: $n ranks, $replicas copies, victim $victim $how after $delay ms: FAIL:$why"
    sed 's/^/    /' "$out" | grep -v 'PMIX ERROR' | head -60
fi
[ -n "${KEEP_LOG:-}" ] && cp "$out" "$KEEP_LOG"
rm -rf "$dir"
[ "$ok" -eq 1 ]
