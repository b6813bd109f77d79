#!/usr/bin/env bash
# scripts/soak-kill.sh [RUNS] - online recovery soak: RUNS times (default 20), a put/fence/get
# workload (tests/kill/online.c) on 4 or 8 ranks with 2 copies per key loses one rank to kill -9
# at a random moment (random victim: rank 0, the first coordinator, a middle rank or the last);
# every survivor must check every acknowledged key byte for byte after the view change and carry
# on. Every fifth run stops the victim (SIGSTOP past the suspicion time) instead of killing it.
# Runs 3, 10, 17, ... add a second death inside the view change (5 ranks, 3 copies): the
# coordinator after announcing its decision to one survivor (FTKV_TEST_FAULT=die-deciding), and
# runs 6, 13, 20, ... a survivor in the middle of re-replication (die-rereplicating).
# Needs build/stage (make stage). One line per run, then a summary with the median time from
# kill to the interrupted fence's return; exit 0 if every run held.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${1:-20}"
STAGE="$ROOT/build/stage"
WORK="$(mktemp -d /tmp/ftkv-soak-kill.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
BIN="$WORK/online"
mpicc -std=gnu99 -O1 -g -Wall -Wextra "$ROOT/tests/kill/online.c" -o "$BIN" \
    -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || exit 1
for v in $(env | sed -n 's/^\(FTKV_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
bad=0
: >"$WORK/times"
for ((run = 1; run <= RUNS; run++)); do
    n=$(( run % 2 ? 4 : 8 ))
    case $((run % 4)) in
        0) victim=0 ;;
        1) victim=$((n / 2)) ;;
        2) victim=$((n - 1)) ;;
        *) victim=$((RANDOM % n)) ;;
    esac
    stopped=0
    [ $((run % 5)) -eq 0 ] && stopped=1
    fault=() replicas=2
    case $((run % 7)) in
        3) n=5 victim=$((1 + RANDOM % 4)) replicas=3 stopped=0 fault=(FAULT=die-deciding FAULT_RANK=0) ;;
        6) n=5 victim=1 replicas=3 stopped=0 fault=(FAULT=die-rereplicating FAULT_RANK=$((2 + RANDOM % 3))) ;;
    esac
    line="$(env "${fault[@]}" STOPPED=$stopped ONLINE_STEPS=$((n == 8 ? 80 : 200)) bash "$ROOT/tests/kill/online.sh" "$BIN" "$n" "$victim" "$replicas" $((n == 8 ? 2500 : 1500)))"
    echo "run $run: $line"
    case "$line" in
        *": PASS"*) sed -n 's/.*a fence it interrupted took \([0-9.]*\) s.*/\1/p' <<<"$line" | awk '$1 > 0' >>"$WORK/times" ;;
        *) bad=$((bad + 1)) ;;
    esac
done
median="$(sort -n "$WORK/times" | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "n/a" }')"
echo "soak-kill: $((RUNS - bad)) of $RUNS runs held; median time of a fence interrupted by the failure: $median s ($(wc -l <"$WORK/times") runs had one)"
[ "$bad" -eq 0 ]
