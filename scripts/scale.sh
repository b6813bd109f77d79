#!/usr/bin/env bash
# scripts/scale.sh [RANKS...] - the many-rank check of docs/scaling.md: tests/mpi/scale.c (open,
# 3 keys per rank, fence, every rank reads every key, the same on two half-job stores, close;
# every value checked) at each rank count (default 2 4 8 16 32 64, all oversubscribed on this
# machine's cores), printing the time between its two barriers and the slowest rank's time per
# phase, and the messages each rank's store sent per phase (kv_stat). Exits non-zero if a run fails its checks or the 64-rank run (if any) takes 10 s or more.
# Needs build/stage (make stage).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGE="$ROOT/build/stage"
LIMIT_64=10
# shellcheck source=tests/mpi-env.sh
. "$ROOT/tests/mpi-env.sh"
counts=("$@")
[ "${#counts[@]}" -gt 0 ] || counts=(2 4 8 16 32 64)
BIN="$(mktemp /tmp/ftkv-scale.XXXXXX)"
LOG="$(mktemp /tmp/ftkv-scale-log.XXXXXX)"
trap 'rm -f "$BIN" "$LOG"' EXIT
mpicc -std=c99 -O1 -g -Wall -Wextra "$ROOT/tests/mpi/scale.c" -o "$BIN" -I"$ROOT/tests/mpi" \
    -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || exit 1
status=0
for n in "${counts[@]}"; do
    start=$(date +%s.%N)
    ftkv_mpirun "$n" 300 "$BIN" </dev/null >"$LOG" 2>&1
    rc=$?
    job=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    line=$(grep -E '^\[scale\] [0-9]+ ranks: [0-9.]+ s between' "$LOG")
    sent=$(grep -E '^\[scale\] [0-9]+ ranks: the store' "$LOG")
    if [ "$rc" -ne 0 ] || ! grep -q '^\[scale\] OK' "$LOG"; then
        echo "FAIL at $n ranks (exit $rc):"
        tail -20 "$LOG"
        status=1
        continue
    fi
    echo "$line; the whole job with its launch: $job s"
    echo "    ${sent#\[scale\] }"
    if [ "$n" -eq 64 ]; then
        secs=$(echo "$line" | sed -E 's/.*ranks: ([0-9.]+) s between.*/\1/')
        if awk -v s="$secs" -v l="$LIMIT_64" 'BEGIN { exit !(s >= l) }'; then
            echo "FAIL: 64 ranks took $secs s (limit $LIMIT_64 s)"
            status=1
        fi
    fi
done
exit $status
