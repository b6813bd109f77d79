#!/usr/bin/env bash
# tests/run-mpi.sh - build and run libftkv's C integration tests (tests/mpi/*.c) under mpirun.
#
# Usage:
#     FTKV_PREFIX=/install/prefix tests/run-mpi.sh [--list] [FILTER...]
#
#   FTKV_PREFIX   install prefix to test: $FTKV_PREFIX/include/ftkv.h, $FTKV_PREFIX/lib/libftkv.so
#                 (required). Tests are linked with -L and -Wl,-rpath to $FTKV_PREFIX/lib.
#   FILTER        only run cases whose test name matches one of these shell patterns (basic, 'p*').
#   --list        print the cases and exit.
#
# Optional environment:
#   FTKV_TEST_BUILD_DIR  where binaries and logs go (default: <repo>/build/tests/mpi).
#   FTKV_TEST_TIMEOUT    per-case time limit in seconds for every case (default: 120, or the
#                        case's own timeout=N).
#   FTKV_TEST_ENV        "VAR=VALUE ..." added to the environment of every case (before its own).
#   FTKV_TEST_TAIL       lines of output shown for a failed case (default 30).
#   LD_LIBRARY_PATH      passed through (a debug libftkv.so needs the Swift runtime's directory).
#
# Each test declares its cases in its source, one per line:
#     //@case RANKS [VAR=VALUE ...] [timeout=SECONDS]
# e.g. "//@case 4 FTKV_REPLICAS=3". A test without //@case lines runs once on 2 ranks.
# The library's configuration variables (FTKV_*) inherited from the caller are cleared for every
# case, so a case runs exactly the configuration it names.
#
# Output: one line per case, "PASS name [4 ranks, VAR=VALUE]" or "FAIL name [...] (exit N)"
# followed by the last lines of its output (a case that prints "[name] SKIP: why" tested nothing
# and counts as failed: every declared case must run here); then "N passed, M failed". Exit status 0 only if
# nothing failed. Full logs: $FTKV_TEST_BUILD_DIR/logs/.
#
# MPI jobs are started through ftkv_mpirun from tests/mpi-env.sh (timeout + mpirun --timeout,
# loopback only, --oversubscribe); a local equivalent is used if that file is missing.

set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
SRC="$HERE/mpi"

list_only=0
filters=()
for arg in "$@"; do
    case "$arg" in
        --list) list_only=1 ;;
        -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) filters+=("$arg") ;;
    esac
done

if [ -f "$HERE/mpi-env.sh" ]; then
    # shellcheck source=/dev/null
    . "$HERE/mpi-env.sh"
fi
if ! declare -F ftkv_mpirun >/dev/null; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo
    ftkv_mpirun() {
        local n="$1" t="$2"
        shift 2
        timeout --kill-after=10 $((t + 15)) \
            mpirun --oversubscribe --bind-to none --timeout "$t" -n "$n" "$@"
    }
fi

BUILD="${FTKV_TEST_BUILD_DIR:-$ROOT/build/tests/mpi}"
LOGS="$BUILD/logs"
DEFAULT_TIMEOUT="${FTKV_TEST_TIMEOUT:-120}"
TAIL="${FTKV_TEST_TAIL:-30}"

matches_filter() {
    [ "${#filters[@]}" -eq 0 ] && return 0
    local f
    for f in "${filters[@]}"; do
        # shellcheck disable=SC2053
        [[ "$1" == $f ]] && return 0
    done
    return 1
}

# All cases: "name|ranks|timeout|VAR=VAL VAR=VAL"
cases=()
tests=()
for src in "$SRC"/*.c; do
    [ -e "$src" ] || continue
    name="$(basename "$src" .c)"
    matches_filter "$name" || continue
    tests+=("$name")
    found=0
    while read -r _tag ranks rest; do
        found=1
        t="$DEFAULT_TIMEOUT"
        vars=""
        for tok in $rest; do
            case "$tok" in
                timeout=*) [ -z "${FTKV_TEST_TIMEOUT:-}" ] && t="${tok#timeout=}" ;;
                *=*) vars="${vars:+$vars }$tok" ;;
            esac
        done
        cases+=("$name|$ranks|$t|$vars")
    done < <(grep -E '^//@case[[:space:]]' "$src")
    [ "$found" -eq 1 ] || cases+=("$name|2|$DEFAULT_TIMEOUT|")
done

label() { # name ranks vars
    local l="$1 [$2 rank"
    [ "$2" = 1 ] || l="${l}s"
    [ -n "$3" ] && l="$l, ${3// /, }"
    echo "$l]"
}

if [ "$list_only" -eq 1 ]; then
    for c in "${cases[@]}"; do
        IFS='|' read -r name ranks t vars <<<"$c"
        echo "$(label "$name" "$ranks" "$vars") timeout ${t}s"
    done
    exit 0
fi

if [ -z "${FTKV_PREFIX:-}" ]; then
    echo "run-mpi.sh: set FTKV_PREFIX to the install prefix to test (include/ftkv.h, lib/libftkv.so)" >&2
    exit 2
fi
if [ ! -f "$FTKV_PREFIX/include/ftkv.h" ]; then
    echo "run-mpi.sh: $FTKV_PREFIX/include/ftkv.h not found" >&2
    exit 2
fi
if ! ls "$FTKV_PREFIX"/lib/libftkv.so* >/dev/null 2>&1; then
    echo "run-mpi.sh: no libftkv.so in $FTKV_PREFIX/lib" >&2
    exit 2
fi
if [ "${#cases[@]}" -eq 0 ]; then
    echo "run-mpi.sh: no test matches ${filters[*]:-}" >&2
    echo "0 passed, 0 failed"
    exit 1
fi

mkdir -p "$BUILD" "$LOGS" || exit 2
rm -f "$LOGS"/*.log
CFLAGS=(-std=c99 -O1 -g -Wall -Wextra)
passed=0
failed=0

# The last lines of a log without Open MPI's boilerplate epilogue; if the test reported failed
# checks, the first of them come first (later ones are often consequences).
show_tail() { # log
    local filtered
    filtered="$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -v -E -e '^-{20,}$' -e '^ *$' -e 'Primary job +terminated normally' \
        -e 'non-zero exit code\. Per user-direction' -e 'mpirun detected that one or more processes' \
        -e 'the job to be terminated\. The first process' -e '^ +Process name: ' -e '^ +Exit code: ')"
    if grep -q '\] FAIL ' <<<"$filtered"; then
        grep '\] FAIL ' <<<"$filtered" | head -n 6 | cut -c1-400 | sed 's/^/    | /'
        echo "    | ..."
        tail -n 8 <<<"$filtered" | cut -c1-400 | sed 's/^/    | /'
    else
        tail -n "$TAIL" <<<"$filtered" | sed 's/^/    | /'
    fi
}

# --- build ---
declare -A built=()
for name in "${tests[@]}"; do
    log="$LOGS/$name.build.log"
    # Sources before -lftkv: this gcc links with --as-needed.
    if mpicc "${CFLAGS[@]}" -I"$FTKV_PREFIX/include" -I"$SRC" -o "$BUILD/$name" "$SRC/$name.c" \
        -L"$FTKV_PREFIX/lib" -Wl,-rpath,"$FTKV_PREFIX/lib" -lftkv -pthread >"$log" 2>&1; then
        built[$name]=1
        if [ -s "$log" ]; then
            echo "note: $name built with warnings (see $log)"
        fi
    else
        echo "FAIL build $name (exit $?)"
        show_tail "$log"
    fi
done

# Configuration variables of the library that a case must not inherit from the caller.
clean_env() {
    local v
    for v in $(compgen -e); do
        case "$v" in
            FTKV_PREFIX|FTKV_TEST_*|FTKV_MPIRUN_*|FTKV_MPI_ENV_DIR) ;;
            FTKV_*|TEST_*) unset "$v" ;;
        esac
    done
}

# --- run ---
start_all=$SECONDS
i=0
for c in "${cases[@]}"; do
    IFS='|' read -r name ranks t vars <<<"$c"
    i=$((i + 1))
    lbl="$(label "$name" "$ranks" "$vars")"
    if [ -z "${built[$name]:-}" ]; then
        echo "FAIL $lbl (not built)"
        failed=$((failed + 1))
        continue
    fi
    log="$LOGS/$(printf '%02d' "$i")-$name.log"
    start=$SECONDS
    (
        clean_env
        for kv in ${FTKV_TEST_ENV:-} $vars; do export "$kv"; done
        echo "# $lbl: ftkv_mpirun $ranks $t $BUILD/$name"
        ftkv_mpirun "$ranks" "$t" "$BUILD/$name"
    ) >"$log" 2>&1 </dev/null
    rc=$?
    secs=$((SECONDS - start))
    if [ "$rc" -eq 0 ] && grep -q '\] SKIP' "$log"; then
        # A declared case that cannot run here tested nothing: it must not count as passed.
        echo "FAIL $lbl (skipped: $(grep -m1 '\] SKIP' "$log" | sed 's/.*SKIP: *//'); log $log)"
        failed=$((failed + 1))
    elif [ "$rc" -eq 0 ]; then
        echo "PASS $lbl (${secs}s)"
        passed=$((passed + 1))
    else
        why="exit $rc"
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] || grep -q "time limit for job execution" "$log"; then
            why="$why, timed out after ${secs}s (limit ${t}s)"
        fi
        echo "FAIL $lbl ($why; log $log)"
        show_tail "$log"
        failed=$((failed + 1))
    fi
done

echo "# total time $((SECONDS - start_all))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
