#!/usr/bin/env bash
# scripts/demo-chain.sh DEMO_BINARY [WORKDIR] - the checkpoint/restart story of examples-c/demo.c:
#   1. 4 ranks start from scratch; rank 2 is SIGKILLed after step 1300 (the job dies);
#   2. 3 ranks restart from the last committed version (step 1250); rank 0 is SIGKILLed after
#      step 1700;
#   3. 5 ranks restart from step 1500 and finish; the field must equal an uninterrupted run's.
# Each job runs under mpirun with a timeout; the store lives in WORKDIR/ftkv-data (emptied first).
# Exit 0 only if both kills happened and the last job printed PASS.
set -uo pipefail
DEMO="$1"
WORK="${2:-$(pwd)/build/demo-run}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/mpi-env.sh
. "$HERE/../tests/mpi-env.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
export FTKV_DIR="$WORK/ftkv-data"
LOG="$WORK/demo.log"
: >"$LOG"
ok=1

run() { # RANKS KILL_STEP KILL_RANK: one job; returns mpirun's status
    local n="$1"
    echo
    echo "---- mpirun -n $n demo${2:+  (DEMO_KILL_STEP=$2 DEMO_KILL_RANK=$3: that rank dies after step $2)}"
    (
        if [ -n "$2" ]; then export DEMO_KILL_STEP="$2" DEMO_KILL_RANK="$3"; fi
        ftkv_mpirun "$n" 120 "$DEMO" 2>&1
    ) | grep -v -e '^-\{20,\}' -e '^\s*$' -e 'Per user-direction' -e 'Primary job' -e 'a non-zero exit code' | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}

run 4 1300 2 && { echo "demo: the job was supposed to die"; ok=0; }
grep -q 'rank 2 is killed' "$LOG" || { echo "demo: rank 2 did not reach its kill"; ok=0; }
run 3 1700 0 && { echo "demo: the job was supposed to die"; ok=0; }
grep -q 'restarted from committed version .* written by 4 ranks, now on 3' "$LOG" || { echo "demo: the 3-rank job did not restart from the 4-rank job's commit"; ok=0; }
if ! run 5 "" ""; then ok=0; fi
grep -q 'restarted from committed version .* written by 3 ranks, now on 5' "$LOG" || { echo "demo: the 5-rank job did not restart from the 3-rank job's commit"; ok=0; }
tail -n 1 "$LOG" | grep -q '^PASS' || ok=0
echo
if [ "$ok" -eq 1 ]; then
    echo "demo: killed twice, restarted on 3 and then 5 ranks from committed versions, and the final"
    echo "      field is bitwise identical to an uninterrupted run."
    exit 0
fi
echo "demo: FAILED (see $LOG)" >&2
exit 1
