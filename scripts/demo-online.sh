#!/usr/bin/env bash
# scripts/demo-online.sh DEMO_BINARY [WORKDIR] - the online-recovery story of examples-c/demo.c:
# 4 ranks under `mpirun --enable-recovery` with DEMO_ONLINE=1 (in-memory checkpoints by kv_fence);
# rank 2 is SIGKILLed after step 1300; the survivors detect it through the store, recover online
# (the store shrinks to 3 ranks and re-replicates; the domain is cut among the 3 and reloaded from
# the checkpoint of step 1250), finish, and check the field against an uninterrupted run.
# Exit 0 only if the rank died, the survivors recovered, and the job printed PASS.
set -uo pipefail
DEMO="$1"
WORK="${2:-$(pwd)/build/demo-online}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/mpi-env.sh
. "$HERE/../tests/mpi-env.sh"
rm -rf "$WORK"
mkdir -p "$WORK"
export FTKV_DIR="$WORK/ftkv-data"
LOG="$WORK/demo.log"
echo
echo "---- mpirun --enable-recovery -n 4 demo  (DEMO_ONLINE=1; DEMO_KILL_STEP=1300 DEMO_KILL_RANK=2: rank 2 dies after step 1300)"
# Open MPI 4.1's MPI_Finalize barrier can hang on a dead rank: skipped (docs/architecture.md).
OMPI_MCA_async_mpi_finalize=1 DEMO_ONLINE=1 DEMO_KILL_STEP=1300 DEMO_KILL_RANK=2 \
    ftkv_mpirun 4 120 --enable-recovery -x DEMO_ONLINE -x DEMO_KILL_STEP -x DEMO_KILL_RANK "$DEMO" 2>&1 \
    | grep -v -e '^-\{20,\}' -e '^\s*$' -e 'PMIX ERROR' -e 'Per user-direction' -e 'Primary job' -e 'a non-zero exit code' \
    | tee "$LOG"
rc=${PIPESTATUS[0]}
ok=1
grep -q 'rank 2 is killed' "$LOG" || { echo "demo: rank 2 did not reach its kill"; ok=0; }
grep -q 'recovered online .* shrank to 3 ranks' "$LOG" || { echo "demo: the survivors did not recover online"; ok=0; }
tail -n 1 "$LOG" | grep -q '^PASS' || ok=0
[ "$rc" -eq 0 ] || { echo "demo: mpirun exited with $rc"; ok=0; }
echo
if [ "$ok" -eq 1 ]; then
    echo "demo: a rank was killed, the 3 survivors recovered online without a restart, and the final"
    echo "      field is bitwise identical to an uninterrupted run."
    exit 0
fi
echo "demo: FAILED (see $LOG)" >&2
exit 1
