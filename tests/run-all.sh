#!/usr/bin/env bash
# tests/run-all.sh - every test of libftkv; `make test` runs it.
#
# Runs each step in order, logs it to build/test-logs/, goes on after a failure, and ends with
# one line "N passed, M failed"; the exit status is non-zero when M > 0.
#   FTKV_TEST_ONLY=regex   run only the steps whose name matches (e.g. 'Fortran|header'); the
#                          builds those steps test (debug build, build/stage) run first whatever
#                          the filter says, so a filtered run never tests a stale build; a regex
#                          that matches no step is a failure
#   FTKV_TEST_QUIET=1      print a step's output only when it fails
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2
# shellcheck source=tests/mpi-env.sh
. tests/mpi-env.sh

command -v swift >/dev/null 2>&1 || PATH="$PATH:/opt/swift/usr/bin"
MAKE="${MAKE:-make}"
STAGE="$ROOT/build/stage"
OUT="$ROOT/build/tests"
LOGS="$ROOT/build/test-logs"
export PKG_CONFIG_PATH="$STAGE/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
rm -rf "$LOGS"
mkdir -p "$OUT" "$LOGS"

passed=0
failed=0
failed_steps=()
matched=0

# run_step NAME command [args...]: one named step; its output goes to the terminal and a log.
# A step whose name starts with "build:" is a prerequisite of the others: it always runs.
run_step() {
    local name="$1"
    shift
    if [ -n "${FTKV_TEST_ONLY:-}" ] && ! [[ "$name" =~ ${FTKV_TEST_ONLY} ]] && [[ "$name" != build:* ]]; then
        return 0
    fi
    [[ "$name" == build:* ]] || matched=$((matched + 1))
    local n=$((passed + failed + 1))
    local log
    log="$LOGS/$(printf '%02d' "$n")-$(printf '%s' "$name" | tr -c 'A-Za-z0-9.-' '_' | cut -c1-60).log"
    echo
    echo "==== [$n] $name"
    local t0=$SECONDS rc
    if [ "${FTKV_TEST_QUIET:-0}" = 1 ]; then
        "$@" </dev/null >"$log" 2>&1
        rc=$?
    else
        "$@" </dev/null 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    fi
    local dt=$((SECONDS - t0))
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        echo "==== [$n] PASS: $name (${dt}s)"
    else
        failed=$((failed + 1))
        failed_steps+=("[$n] $name (exit $rc, log: ${log#"$ROOT"/})")
        [ "${FTKV_TEST_QUIET:-0}" = 1 ] && tail -n 60 "$log"
        echo "==== [$n] FAIL: $name (exit $rc, ${dt}s)"
    fi
}

# ---- the steps ---------------------------------------------------------------------------------

swift_build() { timeout 2400 swift build; }
swift_unit_tests() { timeout 2400 swift test; }

stage_install() {
    # No rm -rf first: someone may be running tests against build/stage; install(1) replaces
    # each file, so running programs keep what they mapped.
    timeout 2400 "$MAKE" --no-print-directory install PREFIX="$STAGE" DESTDIR= || return 1
    echo "--- installed:"
    (cd "$STAGE" && find . \( -type f -o -type l \) | sort | while read -r f; do
        if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else echo "$f ($(stat -c %s "$f") bytes)"; fi
    done)
    readelf -d "$STAGE/lib/libftkv.so.0" | grep -E 'SONAME|NEEDED|RUNPATH|RPATH'
    local fail=0
    for f in lib/libftkv.so lib/libftkv.so.0 bin/ftkv include/ftkv.h lib/pkgconfig/ftkv.pc \
             share/ftkv/fortran/ftkv.f90; do
        [ -e "$STAGE/$f" ] || { echo "missing from the install: $f"; fail=1; }
    done
    [ -x "$STAGE/bin/ftkv" ] || { echo "bin/ftkv is not executable"; fail=1; }
    return "$fail"
}

header_c99() {
    mpicc -std=c99 -Wall -Wextra -pedantic -Werror -I"$STAGE/include" \
        -c tests/header/header_test.c -o "$OUT/header_test_c.o" &&
    echo "ftkv.h compiles cleanly as C99 (mpicc -std=c99 -Wall -Wextra -pedantic -Werror)"
}

# Open MPI's mpi.h pulls in its deprecated C++ bindings, which themselves fail -Wextra -Werror
# (-Wcast-function-type in ompi/mpi/cxx/op_inln.h). Its include directories are therefore given
# as system directories, so that only warnings from ftkv.h count.
# The header test also links and runs: its main checks the values of the codes and stats.
header_run() {
    mpicc -std=c99 -Wall -Wextra -I"$STAGE/include" tests/header/header_test.c -o "$OUT/header_test" \
        -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || return 1
    "$OUT/header_test" && echo "header_test: every declared function links, codes and stats have their documented values"
}

header_cxx() {
    local -a sys=()
    local d
    for d in $(mpicxx --showme:incdirs); do sys+=(-isystem "$d"); done
    mpicxx -x c++ "${sys[@]}" -Wall -Wextra -pedantic -Werror -I"$STAGE/include" \
        -c tests/header/header_test.c -o "$OUT/header_test_cxx.o" &&
    echo "ftkv.h compiles cleanly as C++ (mpicxx -Wall -Wextra -pedantic -Werror)"
}

exports_installed() { bash tests/check-exports.sh "$STAGE/lib/libftkv.so" include/ftkv.h; }
exports_debug() { bash tests/check-exports.sh .build/debug/libftkv.so include/ftkv.h; }

mpi_suite() {
    if [ ! -f tests/run-mpi.sh ]; then
        echo "tests/run-mpi.sh does not exist"
        return 1
    fi
    # Its own "N passed, M failed" line is relabelled, so that the last line of this script is
    # the only line of that form.
    FTKV_PREFIX="$STAGE" bash tests/run-mpi.sh 2>&1 |
        sed -u 's/^\([0-9][0-9]* passed, [0-9][0-9]* failed\)$/tests\/run-mpi.sh: \1/'
    return "${PIPESTATUS[0]}"
}

examples_build() {
    "$MAKE" --no-print-directory -C examples-c clean &&
    "$MAKE" --no-print-directory -C examples-c PKG_CONFIG_PATH="$PKG_CONFIG_PATH"
}

# run_expect_pass NRANKS TIMEOUT program: the program must exit 0 and print a line starting PASS.
run_expect_pass() {
    local out rc
    out="$(mktemp)"
    ftkv_mpirun "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ] && ! grep -q '^PASS' "$out"; then
        echo "exit status 0 but no PASS line"
        rc=1
    fi
    rm -f "$out"
    return "$rc"
}

# A rank is SIGKILLed under mpirun --enable-recovery (tests/kill/kill_rank.c), in several
# configurations: copies per key, which rank dies. Every survivor must print its PASS line (there
# is no collective verdict with a dead member), the victim must really have died, and mpirun must
# exit 0 (under --enable-recovery it does when every survivor does).
# Open MPI 4.1's MPI_Finalize starts with a runtime barrier over the whole job, which a dead member
# can hang (once in about ten 4-rank runs: survivors stuck in ompi_mpi_finalize after passing every
# check); OMPI_MCA_async_mpi_finalize=1 skips that barrier, as an application that outlives a rank
# under Open MPI 4.1 should (docs/architecture.md, Limits).
kill_one() { # ranks replicas victim
    local n="$1" r="$2" v="$3" bin="$OUT/kill_rank" out rc ok=1
    out="$(mktemp)"
    echo "--- $n ranks, $r copies per key, victim rank $v"
    OMPI_MCA_async_mpi_finalize=1 KILL_REPLICAS="$r" KILL_VICTIM="$v" ftkv_mpirun "$n" 90 --enable-recovery -x KILL_REPLICAS -x KILL_VICTIM "$bin" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    grep -q "^kill_rank: rank $v killing itself" "$out" || { echo "the victim did not reach its SIGKILL"; ok=0; }
    for ((s = 0; s < n; s++)); do
        [ "$s" -eq "$v" ] && continue
        grep -q "^kill_rank: rank $s PASS" "$out" || { echo "survivor rank $s did not pass"; ok=0; }
    done
    if grep -qE 'rank [0-9]+ FAIL' "$out"; then ok=0; fi
    [ "$rc" -eq 0 ] || { echo "mpirun exited with $rc (124/137: timed out)"; ok=0; }
    rm -f "$out"
    [ "$ok" -eq 1 ]
}

kill_rank() {
    local bin="$OUT/kill_rank" ok=1
    mpicc -std=c99 -O1 -g -Wall -Wextra tests/kill/kill_rank.c -o "$bin" \
        -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || return 1
    kill_one 3 1 2 || ok=0
    kill_one 3 2 0 || ok=0
    kill_one 4 3 1 || ok=0
    kill_one 4 2 2 || ok=0
    [ "$ok" -eq 1 ]
}

# ftkv_on_failure=abort (tests/kill/abort_policy.c): a rank dies while the others sit in their own
# MPI_Barrier, which would hang forever; the library must end the job, naming the dead rank, within
# the suspicion time (0.8 s) plus a margin for mpirun's teardown.
abort_policy() {
    local bin="$OUT/abort_policy" out start elapsed rc ok=1
    mpicc -std=c99 -O1 -g -Wall -Wextra tests/kill/abort_policy.c -o "$bin" \
        -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || return 1
    out="$(mktemp)"
    start=$(date +%s.%N)
    ftkv_mpirun 4 60 --enable-recovery "$bin" >"$out" 2>&1
    rc=$?
    elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    grep -v 'PMIX ERROR' "$out" | grep -E 'abort_policy|ftkv:|MPI_ABORT' | head -8
    grep -q "killing itself" "$out" || { echo "the victim did not die"; ok=0; }
    grep -q "rank 3 failed (no heartbeat for 0.8 s); ftkv_on_failure=abort: ending the job" "$out" \
        || { echo "no message naming the dead rank"; ok=0; }
    grep -q "abort_policy: FAIL" "$out" && ok=0
    # Under --enable-recovery Open MPI 4.1's mpirun exits 0 even after MPI_Abort (and when ranks
    # exit non-zero themselves): what counts is that every rank is gone, promptly.
    [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] || { echo "the job hung until the timeout"; ok=0; }
    # Launch and teardown included: a 4-rank job here starts and ends in about 1 s.
    awk -v t="$elapsed" 'BEGIN { exit !(t < 8) }' || { echo "the job took $elapsed s to end"; ok=0; }
    echo "job ended $elapsed s after mpirun started (exit status $rc)"
    rm -f "$out"
    [ "$ok" -eq 1 ]
}

# kv_cas stays linearizable when the primary of a contended counter dies (tests/kill/cas_kill.c):
# every survivor prints PASS after the lowest survivor checked all ranks' logs of their swaps.
cas_one() { # ranks victims replicas
    local n="$1" v="$2" r="$3" bin="$OUT/cas_kill" out logs rc ok=1 s
    out="$(mktemp)"
    logs="$(mktemp -d)"
    echo "--- $n ranks, victims $v, $r copies per key"
    OMPI_MCA_async_mpi_finalize=1 CAS_LOG_DIR="$logs" CAS_VICTIMS="$v" CAS_REPLICAS="$r" \
        ftkv_mpirun "$n" 120 --enable-recovery -x CAS_LOG_DIR -x CAS_VICTIMS -x CAS_REPLICAS "$bin" 2>&1 |
        grep -v 'PMIX ERROR' | tee "$out"
    rc=${PIPESTATUS[0]}
    for ((s = 0; s < n; s++)); do
        if [[ ",$v," == *",$s,"* ]]; then
            grep -q "^cas_kill: rank $s killing itself" "$out" || { echo "victim rank $s did not die"; ok=0; }
        else
            grep -q "^cas_kill: rank $s PASS" "$out" || { echo "survivor rank $s did not pass"; ok=0; }
        fi
    done
    grep -q "^cas_kill: checked" "$out" || { echo "the logs were not checked"; ok=0; }
    [ "$rc" -eq 0 ] || { echo "mpirun exited with $rc (124/137: timed out)"; ok=0; }
    rm -rf "$out" "$logs"
    [ "$ok" -eq 1 ]
}

cas_kill() {
    local ok=1
    mpicc -std=c99 -O1 -g -Wall -Wextra tests/kill/cas_kill.c -o "$OUT/cas_kill" \
        -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || return 1
    cas_one 4 1 2 || ok=0
    cas_one 4 0 2 || ok=0
    cas_one 8 5 2 || ok=0
    cas_one 5 1,3 3 || ok=0
    [ "$ok" -eq 1 ]
}

# examples-c/taskfarm.c: manager/worker lists in the store; workers SIGKILL themselves holding a
# task. The farm must finish every task exactly once (the manager prints PASS after checking),
# every named victim must have died, and each task it held must have been put back.
taskfarm_run() { # ranks kills
    local n="$1" kills="$2" out rc ok=1 victim
    out="$(mktemp)"
    echo "--- $n ranks, TASKFARM_KILL=$kills"
    OMPI_MCA_async_mpi_finalize=1 TASKFARM_KILL="$kills" \
        ftkv_mpirun "$n" 90 --enable-recovery -x TASKFARM_KILL examples-c/bin/taskfarm 2>&1 | grep -v 'PMIX ERROR' | tee "$out"
    rc=${PIPESTATUS[0]}
    for victim in $(printf '%s' "$kills" | tr ',' '\n' | cut -d: -f1); do
        grep -q "^taskfarm: worker $victim is killed" "$out" || { echo "worker $victim did not die"; ok=0; }
        grep -q "^taskfarm: manager puts task [0-9]* back (worker $victim died" "$out" \
            || { echo "worker $victim's task was not put back"; ok=0; }
    done
    grep -q '^PASS taskfarm' "$out" || ok=0
    [ "$rc" -eq 0 ] || { echo "mpirun exited with $rc (124/137: timed out)"; ok=0; }
    rm -f "$out"
    [ "$ok" -eq 1 ]
}

taskfarm() {
    local ok=1
    taskfarm_run 4 "" || ok=0
    taskfarm_run 4 2:5 || ok=0
    taskfarm_run 6 2:5,4:12 || ok=0
    [ "$ok" -eq 1 ]
}

# Online recovery under a put/fence/get workload (tests/kill/online.c via tests/kill/online.sh):
# the victim is SIGKILLed (or SIGSTOPped past the suspicion time) from outside at a random moment;
# every survivor checks every acknowledged key byte for byte after the view change and carries on.
# scripts/soak-kill.sh runs 20 such kills.
online_recovery() {
    local bin="$OUT/online" ok=1
    mpicc -std=gnu99 -O1 -g -Wall -Wextra tests/kill/online.c -o "$bin" \
        -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || return 1
    # The kill lands mid-workload: online.sh paces the steps so they last twice the longest
    # delay (ONLINE_STEP_MS), and fails a run whose failure no step saw. Unpaced, 200 steps took
    # under half a second on 4 ranks here (2026-12-02), and most kills came after the workload.
    ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 4 0 2 1200 || ok=0
    # This one also commits after the view change and restarts that version on 3 ranks.
    ONLINE_COMMIT=1 ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 4 2 2 1200 || ok=0
    ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 4 3 2 1200 || ok=0
    # Re-replication's messages cut to 1,000 bytes: most records straddle two or more of them.
    FTKV_TEST_BATCH_BYTES=1000 ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 4 1 2 1200 || ok=0
    # With the room for restored copies kept resident by every fence (ftkv_recovery_reserve=on).
    FTKV_RECOVERY_RESERVE=on ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 8 6 2 1200 || ok=0
    ONLINE_STEPS=80 bash tests/kill/online.sh "$bin" 8 5 2 1500 || ok=0
    ONLINE_STEPS=200 STOPPED=1 bash tests/kill/online.sh "$bin" 4 1 2 800 || ok=0
    # A whole node (ranks 2 and 3 of 3 two-rank nodes) at once, 2 copies on distinct nodes; and two
    # simultaneous failures with 3 copies.
    ONLINE_STEPS=120 ONLINE_RANKS_PER_NODE=2 bash tests/kill/online.sh "$bin" 6 2,3 2 700 || ok=0
    ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 5 1,3 3 700 || ok=0
    # Sequential failures down to a single survivor (the first victim is rank 0, the coordinator),
    # each view change and re-replication done before the next kill.
    KILL_GAP_MS=1500 ONLINE_STEPS=400 bash tests/kill/online.sh "$bin" 4 0,3,1 2 500 || ok=0
    # The same with few steps: the later victims finish first and, while they wait to be killed,
    # are told of the earlier deaths (KV_EPROCFAILED once each) and go on.
    KILL_GAP_MS=1500 ONLINE_STEPS=30 bash tests/kill/online.sh "$bin" 4 0,3,1 2 500 || ok=0
    # A second death inside the view change (test faults): the coordinator after telling one
    # survivor its decision, and a survivor in the middle of re-replication (3 copies: two dead).
    FAULT=die-deciding FAULT_RANK=0 ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 5 2 3 800 || ok=0
    FAULT=die-rereplicating FAULT_RANK=3 ONLINE_STEPS=200 bash tests/kill/online.sh "$bin" 5 1 3 800 || ok=0
    [ "$ok" -eq 1 ]
}

# Checkpoint/restart over real files (tests/restart/run.sh): commit, kill the job, restart on
# the same, fewer and more ranks, per-rank directories with one deleted, damaged files, deaths
# inside kv_commit, a full filesystem.
restart_scenarios() {
    local bin="$OUT/restart"
    mpicc -std=c99 -O1 -g -Wall -Wextra tests/restart/restart.c -o "$bin" -Itests/mpi \
        -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || return 1
    bash tests/restart/run.sh "$bin" "$STAGE/bin/ftkv"
}

# The demo from scratch (its store in a fresh directory), to the end.
demo_fresh() {
    rm -rf "$OUT/demo-fresh"
    FTKV_DIR="$OUT/demo-fresh" run_expect_pass "$1" 120 examples-c/bin/demo
}

FORTRAN_DIR="$OUT/fortran"
fortran_build() {
    rm -rf "$FORTRAN_DIR" build/tests/fortran-ftkv-data
    mkdir -p "$FORTRAN_DIR"
    local src libs
    src="$(pkg-config --variable=fortrandir ftkv)/ftkv.f90" || return 1
    libs="$(pkg-config --libs ftkv)" || return 1
    echo "module source: $src"
    # shellcheck disable=SC2086
    (cd "$FORTRAN_DIR" &&
        mpifort -g -Wall -fcheck=all -c "$src" -o ftkv.o &&
        mpifort -g -Wall -fcheck=all "$ROOT/tests/fortran/test_ftkv.f90" ftkv.o $libs -o test_ftkv &&
        mpifort -g -Wall -fcheck=all "$ROOT/fortran/example.f90" ftkv.o $libs -o example) &&
    echo "built $FORTRAN_DIR/test_ftkv and $FORTRAN_DIR/example"
}

fortran_example() {
    local out rc
    out="$(mktemp)"
    ftkv_mpirun 2 90 "$FORTRAN_DIR/example" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ] && [ "$(grep -c 'intact: T' "$out")" -ne 2 ]; then
        echo "expected 2 lines 'intact: T'"
        rc=1
    fi
    rm -f "$out"
    return "$rc"
}

swift_example() {
    local exe=.build/debug/ftkv-swift-example
    if [ ! -x "$exe" ]; then
        echo "$exe does not exist (no swift-example target built yet)"
        return 1
    fi
    ftkv_mpirun 2 90 "$exe"
}

# The installed library from a plain mpicc program, run with an (almost) empty environment: no
# toolchain on PATH, no LD_LIBRARY_PATH; found through the executable's rpath.
minimal_env() {
    mpicc -std=c99 -Wall -Wextra tests/c/smoke.c -I"$STAGE/include" \
        -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv -o "$OUT/smoke" || return 1
    local deps
    deps="$(ldd "$OUT/smoke")" || return 1
    echo "--- ldd $OUT/smoke | grep ftkv:"
    grep ftkv <<<"$deps"
    grep -q "libftkv.so.0 => $STAGE/lib/libftkv.so.0" <<<"$deps" || {
        echo "the program does not load libftkv.so.0 from $STAGE/lib"
        return 1
    }
    env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" bash -c \
        '. tests/mpi-env.sh && env | sort | grep -E "^(PATH|LD_|OMPI_)" && ftkv_mpirun 2 90 "$1"' \
        minimal-env "$OUT/smoke"
}

# A short ftkv bench whose --json file must list every figure the text printed (not timed).
bench_json() {
    local json="$OUT/bench.json" text="$OUT/bench.txt"
    rm -f "$json"
    ftkv_mpirun 2 300 "$STAGE/bin/ftkv" bench --keys 5000 --gets 5000 --json "$json" >"$text" 2>&1 || { cat "$text"; return 1; }
    cat "$text"
    local printed listed
    printed=$(grep -c '(mean ' "$text")
    listed=$(grep -c '"name": ' "$json")
    echo "--- $printed figures printed, $listed in $json"
    [ "$listed" -ge 15 ] && [ "$listed" -eq "$printed" ] && grep -q '"figures": \[' "$json" && tail -c 4 "$json" | grep -q ']}'
}

no_swift_runtime_needed() {
    local lib="$STAGE/lib/libftkv.so.0" exe="$STAGE/bin/ftkv" fail=0
    echo "--- ldd $lib:"
    env -i PATH=/usr/bin:/bin ldd "$lib" || fail=1
    echo "--- ldd $exe:"
    env -i PATH=/usr/bin:/bin ldd "$exe" || fail=1
    if env -i PATH=/usr/bin:/bin ldd "$lib" "$exe" | grep -iE 'libswift|libFoundation|libdispatch|not found'; then
        echo "the installed library or tool needs Swift runtime libraries or misses a library"
        fail=1
    fi
    return "$fail"
}

# ---- run them ----------------------------------------------------------------------------------

echo "libftkv tests in $ROOT ($(swift --version 2>/dev/null | head -n 1); $(mpirun --version | head -n 1))"

run_step "build: swift build (debug)" swift_build
run_step "swift test (unit tests)" swift_unit_tests
run_step "build: make install PREFIX=build/stage" stage_install
run_step "header: C99 (mpicc -pedantic -Werror)" header_c99
run_step "header: links against the library and its values hold" header_run
run_step "header: C++ (mpicxx -pedantic -Werror)" header_cxx
run_step "exports: installed libftkv.so == ftkv.h functions" exports_installed
run_step "exports: debug .build/debug/libftkv.so == ftkv.h functions" exports_debug
run_step "MPI suite: tests/run-mpi.sh" mpi_suite
run_step "kill: a rank SIGKILLed under --enable-recovery (1-3 copies, first/middle/last victim): failover, view change, re-replication, every copy counted" kill_rank
run_step "ftkv_on_failure=abort: a rank dies while the others wait in their own MPI_Barrier; the library ends the job, naming it" abort_policy
run_step "online recovery: kill -9 or SIGSTOP at a random moment of a put/fence/get workload (4-8 ranks, a whole node, two at once with 3 copies, one by one down to one survivor, the coordinator dying mid-decision, a survivor dying mid-re-replication; re-replication cut into 1,000-byte messages, or into room kept resident), every acknowledged key byte for byte" online_recovery
run_step "kv_cas: the primary of contended counters SIGKILLed mid-run (4-8 ranks, two at once with 3 copies); no swap lost or doubled" cas_kill
run_step "restart: kv_commit, job killed, restart on 1-6 ranks; lost directories, damaged files, deaths in kv_commit, full disk" restart_scenarios
run_step "client/server: ftkv serve on 2 and 4 ranks, two client jobs writing at once, a third reading back byte for byte; wrong or missing secret, unknown name, dead port, stopped server give codes; two jobs leaving at once 20 times; a paused server rank excluded, its clients moved on, ftkv stop still ending the job in order; a client job SIGKILLed while another writes; a server rank SIGKILLed during a workload; a durable server (--dir) committing at ftkv stop and loaded by a server of another size; ftkv stop and SIGTERM" env FTKV_PREFIX="$STAGE" bash tests/server/run.sh
run_step "examples-c: build with pkg-config" examples_build
run_step "examples-c: hello, 1 rank" ftkv_mpirun 1 60 examples-c/bin/hello
run_step "examples-c: hello, 4 ranks" ftkv_mpirun 4 90 examples-c/bin/hello
run_step "examples-c: demo, 1 rank, uninterrupted" demo_fresh 1
run_step "examples-c: demo, killed on 4 ranks, restarted on 3, killed, restarted on 5, bitwise equal" bash scripts/demo-chain.sh examples-c/bin/demo "$OUT/demo-run"
run_step "examples-c: client/server demo (ompi-server, ftkv serve, a writer job, a reader job of another size, ftkv stop)" bash scripts/client-server-demo.sh "$STAGE"
run_step "examples-c: taskfarm, task lists in the store, no failure, then 1 and 2 workers SIGKILLed holding tasks: every task done exactly once" taskfarm
run_step "examples-c: demo online, a rank killed on 4 ranks, the survivors recover without a restart, bitwise equal" bash scripts/demo-online.sh examples-c/bin/demo "$OUT/demo-online"
run_step "Fortran: build module, test and example (mpifort)" fortran_build
run_step "Fortran: test_ftkv, 2 ranks" run_expect_pass 2 90 "$FORTRAN_DIR/test_ftkv"
run_step "Fortran: test_ftkv, 4 ranks" run_expect_pass 4 120 "$FORTRAN_DIR/test_ftkv"
run_step "Fortran: example, 2 ranks" fortran_example
run_step "Swift example: ftkv-swift-example, 2 ranks" swift_example
run_step "installed library, plain mpicc program, minimal env (env -i)" minimal_env
run_step "installed library and tool need no Swift runtime (ldd)" no_swift_runtime_needed
run_step "ftkv bench --json: every printed figure in the file (2 ranks, 5,000 keys; not timed)" bench_json

if [ -n "${FTKV_TEST_ONLY:-}" ] && [ "$matched" -eq 0 ]; then
    failed=$((failed + 1))
    failed_steps+=("FTKV_TEST_ONLY='$FTKV_TEST_ONLY' matches no test step")
fi

echo
if [ "${#failed_steps[@]}" -gt 0 ]; then
    echo "failed steps:"
    printf '  %s\n' "${failed_steps[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
