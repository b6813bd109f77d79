#!/usr/bin/env bash
# scripts/soak-commit.sh [RUNS] [RANKS] - kill -9 a random rank at a random moment while a job
# commits version after version (tests/restart/restart.c "soak"), RUNS times (default 20), then
# restart and check that the store is exactly one committed step's state: never a mix, never
# garbage. Each run's restart also continues committing, so runs chain on one store.
# Needs build/stage (make stage). Prints one line per run and a summary; exit 0 if all held.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-20}"
RANKS="${2:-4}"
STAGE="$ROOT/build/stage"
# shellcheck source=tests/mpi-env.sh
. "$ROOT/tests/mpi-env.sh"
WORK="$(mktemp -d /tmp/ftkv-soak.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
BIN="$WORK/restart"
mpicc -std=c99 -O1 -g -Wall -Wextra "$ROOT/tests/restart/restart.c" -o "$BIN" -I"$ROOT/tests/mpi" \
    -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || exit 1
for v in $(env | sed -n 's/^\(FTKV_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export FTKV_DIR="$WORK/data" KEYS_TOTAL=3000 FTKV_TIMEOUT=10
bad=0
last_step=-1
for ((run = 1; run <= RUNS; run++)); do
    log="$WORK/run$run.log"
    ftkv_mpirun "$RANKS" 120 "$BIN" soak >"$log" 2>&1 &
    job=$!
    # Wait until every rank has printed its pid (the loaded state was checked by then).
    for _ in $(seq 200); do [ "$(grep -c '^soak: rank' "$log")" -ge "$RANKS" ] && break; sleep 0.05; done
    delay=$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.2f", 0.2 + rand() * 2.0 }')
    victim=$((RANDOM % RANKS))
    sleep "$delay"
    pid="$(sed -n "s/^soak: rank $victim pid \([0-9]*\)$/\1/p" "$log" | head -n 1)"
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    wait "$job"
    loaded="$(grep -m1 '^restart: loaded' "$log" || echo 'restart: (no line)')"
    step="$(sed -n 's/^restart: loaded version [0-9]* = step \([0-9]*\):.*/\1/p' "$log" | head -n 1)"
    if ! grep -q 'every key exactly as committed' "$log" || grep -q 'FAIL' "$log"; then
        echo "run $run: FAIL: $loaded"
        grep FAIL "$log" | head -n 5
        bad=$((bad + 1))
    elif [ -n "$step" ] && [ "$step" -lt "$last_step" ]; then
        echo "run $run: FAIL: loaded step $step, older than the $last_step an earlier restart saw"
        bad=$((bad + 1))
    else
        echo "run $run: rank $victim killed after ${delay}s; the restart before it ${loaded#restart: }"
        last_step="${step:-$last_step}"
    fi
done
# A final restart checks what the last kill left.
log="$WORK/final.log"
ftkv_mpirun "$RANKS" 120 "$BIN" soak-check >"$log" 2>&1
if grep -q 'every key exactly as committed' "$log" && grep -q '^\[restart\] OK' "$log"; then
    echo "final restart: $(grep -m1 '^restart: loaded' "$log" | sed 's/^restart: //')"
else
    echo "final restart: FAIL"; tail -n 20 "$log"; bad=$((bad + 1))
fi
echo "soak-commit: $RUNS kills during kv_commit loops on $RANKS ranks, $bad failures"
[ "$bad" -eq 0 ]
