#!/usr/bin/env bash
# scripts/soak-coordination.sh [RUNS] - coordination through the store under random failures:
# RUNS times (default 20), alternately
#   - tests/kill/cas_kill.c: 4-8 ranks increment contended counters with kv_cas; 1 random rank
#     (2 with 3 copies, on 5+ ranks) SIGKILLs itself after a random number (10-150) of its swaps;
#     the lowest survivor checks every rank's log (no swap lost or doubled);
#   - examples-c/taskfarm.c: 4-6 ranks, 1 or 2 random workers SIGKILL themselves after a random
#     number (1-40) of claims, holding a task; every task must be done exactly once.
# Needs build/stage (make stage) and examples-c/bin/taskfarm (make -C examples-c). One line per
# run, then "N of RUNS runs held"; exit 0 if every run held.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-20}"
STAGE="$ROOT/build/stage"
# shellcheck source=tests/mpi-env.sh
. "$ROOT/tests/mpi-env.sh"
export FTKV_MPIRUN_TRACES=0
WORK="$(mktemp -d /tmp/ftkv-soak-coord.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
mpicc -std=c99 -O1 -g -Wall -Wextra "$ROOT/tests/kill/cas_kill.c" -o "$WORK/cas_kill" \
    -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || exit 1
FARM="$ROOT/examples-c/bin/taskfarm"
[ -x "$FARM" ] || { echo "soak-coordination: build examples-c first (make -C examples-c)" >&2; exit 1; }
for v in $(env | sed -n 's/^\(FTKV_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

# distinct N LOW HIGH: N distinct random integers in LOW..HIGH, comma-separated.
distinct() {
    local n="$1" lo="$2" hi="$3" out=() x
    while [ "${#out[@]}" -lt "$n" ]; do
        x=$((lo + RANDOM % (hi - lo + 1)))
        [[ " ${out[*]} " == *" $x "* ]] || out+=("$x")
    done
    local IFS=,
    echo "${out[*]}"
}

bad=0
for ((run = 1; run <= RUNS; run++)); do
    out="$WORK/out.$run"
    if [ $((run % 2)) -eq 1 ]; then
        n=$((4 + RANDOM % 5)) replicas=2 nv=1
        if [ "$n" -ge 5 ] && [ $((RANDOM % 2)) -eq 0 ]; then replicas=3 nv=2; fi
        victims="$(distinct "$nv" 0 $((n - 1)))"
        after=$((10 + RANDOM % 141))
        rm -f "$WORK"/cas.*.log
        OMPI_MCA_async_mpi_finalize=1 CAS_LOG_DIR="$WORK" CAS_VICTIMS="$victims" CAS_REPLICAS="$replicas" \
            CAS_KILL_AFTER="$after" ftkv_mpirun "$n" 120 --enable-recovery \
            -x CAS_LOG_DIR -x CAS_VICTIMS -x CAS_REPLICAS -x CAS_KILL_AFTER "$WORK/cas_kill" >"$out" 2>&1
        rc=$?
        ok=1
        for ((s = 0; s < n; s++)); do
            if [[ ",$victims," == *",$s,"* ]]; then
                grep -q "^cas_kill: rank $s killing itself" "$out" || ok=0
            else
                grep -q "^cas_kill: rank $s PASS" "$out" || ok=0
            fi
        done
        [ "$rc" -eq 0 ] || ok=0
        what="cas_kill: $n ranks, $replicas copies, victims $victims after $after swaps"
        detail="$(grep -m1 '^cas_kill: checked' "$out" | sed 's/^cas_kill: //')"
    else
        n=$((4 + RANDOM % 3)) nv=$((1 + RANDOM % 2))
        workers="$(distinct "$nv" 1 $((n - 1)))"
        kills=""
        for w in ${workers//,/ }; do kills+="${kills:+,}$w:$((1 + RANDOM % 40))"; done
        OMPI_MCA_async_mpi_finalize=1 TASKFARM_KILL="$kills" \
            ftkv_mpirun "$n" 120 --enable-recovery -x TASKFARM_KILL "$FARM" >"$out" 2>&1
        rc=$?
        ok=1
        grep -q '^PASS taskfarm' "$out" || ok=0
        [ "$rc" -eq 0 ] || ok=0
        what="taskfarm: $n ranks, TASKFARM_KILL=$kills"
        detail="$(grep -m1 'tasks done in' "$out" | sed 's/^taskfarm: //')"
    fi
    if [ "$ok" -eq 1 ]; then
        echo "run $run: $what: PASS ($detail)"
    else
        bad=$((bad + 1))
        echo "run $run: $what: FAIL (exit $rc)"
        grep -v 'PMIX ERROR' "$out" | grep -E 'FAIL|killed|killing|PASS' | head -20 | sed 's/^/    /'
    fi
done
echo "soak-coordination: $((RUNS - bad)) of $RUNS runs held"
[ "$bad" -eq 0 ]
