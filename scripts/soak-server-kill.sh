#!/usr/bin/env bash
# scripts/soak-server-kill.sh [RUNS] - a store server loses a rank during a client workload, RUNS
# times (default 10): tests/server/run.sh with SERVER_TEST_ONLY=kill. Each run: server of 3 ranks
# (r = 2, mpirun --enable-recovery), rank 2 SIGKILLed 2 s into a 3-rank client job's 60,000 puts;
# the job must finish with every key read back byte for byte, a new client job must connect and
# read every key, and the server must stop in order. Prints one line per run and "N of RUNS held".
# Needs build/stage (make stage).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-10}"
held=0
for ((i = 1; i <= runs; i++)); do
    log="$(mktemp)"
    if SERVER_TEST_ONLY=kill FTKV_PREFIX="${FTKV_PREFIX:-$ROOT/build/stage}" timeout 400 bash "$ROOT/tests/server/run.sh" >"$log" 2>&1; then
        held=$((held + 1))
        echo "run $i: held ($(grep -E '^client (write|read) K' "$log" | sed 's/.*byte for byte, //' | tr '\n' ' '))"
    else
        echo "run $i: FAILED: $(grep -E '^FAIL|fence|put' "$log" | head -3 | tr '\n' ' ')"
    fi
    rm -f "$log"
done
echo "$held of $runs held"
[ "$held" -eq "$runs" ]
