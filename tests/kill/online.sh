#!/usr/bin/env bash
# tests/kill/online.sh - one run of tests/kill/online.c: N ranks under mpirun --enable-recovery,
# rank VICTIM SIGKILLed from outside after a random delay (DELAY_MS, or random in 0..MAX_DELAY_MS),
# every survivor must print its PASS line, and nothing may be left running. With STOPPED=1 the
# victim is stopped (SIGSTOP) instead, for STOP_S seconds (default 3, past the suspicion time),
# then continued, and must report that it was excluded.
#
#   tests/kill/online.sh BINARY NRANKS VICTIM [REPLICAS] [MAX_DELAY_MS]
# Prints one summary line: "online: N ranks, victim V killed after D ms: PASS|FAIL ...".
set -u
bin="$1" n="$2" victim="$3" replicas="${4:-2}" max_delay="${5:-1500}"
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/../mpi-env.sh"
dir="$(mktemp -d)"
out="$dir/out"
delay="${DELAY_MS:-$(( (RANDOM * 32768 + RANDOM) % (max_delay + 1) ))}"

# Open MPI 4.1's MPI_Finalize runtime barrier can hang on a dead member: skipped (see run-all.sh).
stopped="${STOPPED:-0}"
OMPI_MCA_async_mpi_finalize=1 ONLINE_VICTIM="$victim" ONLINE_REPLICAS="$replicas" ONLINE_DIR="$dir" ONLINE_STOPPED="$stopped" \
    ftkv_mpirun "$n" "${JOB_TIMEOUT:-120}" --enable-recovery -x ONLINE_VICTIM -x ONLINE_REPLICAS -x ONLINE_DIR -x ONLINE_STEPS -x ONLINE_STOPPED \
    "$bin" >"$out" 2>&1 &
job=$!
# The victim's PID, once it has opened... (it writes the file before kv_open).
for _ in $(seq 1 600); do
    [ -s "$dir/pid.$victim" ] && break
    sleep 0.05
done
pid="$(cat "$dir/pid.$victim" 2>/dev/null || true)"
if [ -n "$pid" ]; then
    sleep "$(awk -v d="$delay" 'BEGIN { printf "%.3f", d / 1000 }')"
    if [ "$stopped" = 1 ]; then
        kill -STOP "$pid" 2>/dev/null || true
        sleep "${STOP_S:-3}"
        kill -CONT "$pid" 2>/dev/null || true
    else
        kill -9 "$pid" 2>/dev/null || true
    fi
fi
wait "$job"
rc=$?
ok=1
why=""
[ -n "$pid" ] || { ok=0; why+=" the victim never started;"; }
for ((s = 0; s < n; s++)); do
    [ "$s" -eq "$victim" ] && continue
    grep -q "^online: rank $s PASS" "$out" || { ok=0; why+=" survivor $s did not pass;"; }
done
grep -qE 'rank [0-9]+ FAIL' "$out" && { ok=0; why+=" FAIL lines;"; }
[ "$rc" -eq 0 ] || { ok=0; why+=" mpirun exited with $rc;"; }
if [ "$stopped" = 1 ]; then
    grep -q "^online: rank $victim excluded after being stopped" "$out" || { ok=0; why+=" the stopped victim did not find itself excluded;"; }
fi
how=killed
[ "$stopped" = 1 ] && how="stopped ${STOP_S:-3} s"
summary="$(grep -m1 "^online: rank $(( victim == 0 ? 1 : 0 )) view change" "$out" | sed 's/^online: //')"
if [ "$ok" -eq 1 ]; then
    echo "online: $n ranks, $replicas copies, victim $victim $how after $delay ms: PASS ($summary)"
else
    echo "online: $n ranks, $replicas copies, victim $victim $how after $delay ms: FAIL:$why"
    sed 's/^/    /' "$out" | grep -v 'PMIX ERROR' | head -60
fi
[ -n "${KEEP_LOG:-}" ] && cp "$out" "$KEEP_LOG"
rm -rf "$dir"
[ "$ok" -eq 1 ]
