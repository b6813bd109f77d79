#!/usr/bin/env bash
# tests/restart/run.sh BIN FTKV - checkpoint/restart scenarios, each a chain of MPI jobs over real
# files: commit, kill the job, restart on the same, fewer and more ranks; one directory per rank
# with one deleted; damaged, truncated and deleted data and manifest files; every key lost with
# one copy; commit failures and deaths at each step of the commit protocol; a full, a read-only
# and an impossible directory; delta chains; the second tier.
# Every restart checks every key byte for byte (restart.c). BIN is the compiled restart.c, FTKV
# the ftkv tool: `ftkv verify` must agree with each restart (0 intact, 1 repairable, 2 lost).
# Prints PASS/FAIL per scenario and exits non-zero if any failed.
set -u
BIN="$1"
FTKV="$2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/mpi-env.sh
. "$HERE/../mpi-env.sh"
WORK="$(mktemp -d /tmp/ftkv-restart.XXXXXX)"
MOUNTED=""
cleanup() {
    [ -n "$MOUNTED" ] && umount "$MOUNTED" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
# Only what each step names: no inherited library configuration.
for v in $(env | sed -n 's/^\(FTKV_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export KEYS_TOTAL=3000 FTKV_TIMEOUT=20

failed=0
LOG="$WORK/step.log"
# job RANKS [VAR=VALUE ...] -- MODE: restart.c under mpirun with those variables, output in $LOG;
# with PER_RANK=BASE each rank gets its own directory BASE/node<rank> (per-rank-dir.sh).
job() {
    local n="$1"
    shift
    local -a vars=()
    while [ "$1" != "--" ]; do vars+=("$1"); shift; done
    shift
    (
        [ "${#vars[@]}" -gt 0 ] && export "${vars[@]}"
        ftkv_mpirun "$n" 90 ${PER_RANK:+"$HERE/per-rank-dir.sh" "$PER_RANK"} "$BIN" "$@"
    ) >"$LOG" 2>&1
}

# step NAME RANKS [VAR=VALUE ...] -- MODE: one job; passes if it prints "[restart] OK".
step() {
    local name="$1" n="$2"
    shift 2
    if job "$n" "$@" && grep -q '^\[restart\] OK' "$LOG"; then
        echo "  ok   $name ($n ranks) $(grep -m1 '^restart:' "$LOG" | cut -c1-150)"
        grep '^ftkv:' "$LOG" | sed 's/^/         /' | cut -c1-200
        return 0
    fi
    echo "  FAIL $name ($n ranks)"
    grep -v '^\s*$' "$LOG" | tail -25 | sed 's/^/       | /'
    failed=$((failed + 1))
    return 1
}
# killed NAME RANKS [VAR=VALUE ...] -- MODE: a job that must die by SIGKILL after printing MARK.
killed() {
    local name="$1" n="$2" mark="$3"
    shift 3
    job "$n" "$@"
    if grep -q "$mark" "$LOG" && grep -q 'signal 9' "$LOG" && ! grep -q 'FAIL' "$LOG"; then
        echo "  ok   $name ($n ranks): killed as planned"
        return 0
    fi
    echo "  FAIL $name ($n ranks): not killed as planned"
    grep -v '^\s*$' "$LOG" | tail -25 | sed 's/^/       | /'
    failed=$((failed + 1))
    return 1
}
scenario() { echo "--- $*"; }
# verify WANT_STATUS DIR...: ftkv verify must exit with WANT_STATUS.
verify() {
    local want="$1" rc
    shift
    "$FTKV" verify "$@" >"$WORK/verify.log" 2>&1
    rc=$?
    if [ "$rc" -eq "$want" ]; then
        echo "  ok   ftkv verify exits $rc: $(grep -v '^OK' "$WORK/verify.log" | head -n 2 | tr '\n' ' ' | cut -c1-160)"
        return 0
    fi
    echo "  FAIL ftkv verify exited $rc, want $want"
    sed 's/^/       | /' "$WORK/verify.log" | tail -n 15
    failed=$((failed + 1))
}

scenario "A. one shared directory, 2 copies: commit v1, v2, uncommitted writes, job killed; restart on 4, 3, 6, 1 ranks; advance to v3 on 3 ranks; keep=2"
A="$WORK/a"
killed "write v1, v2, then die" 4 "killing the job" FTKV_DIR="$A" -- write
for n in 4 3 6 1; do step "restart loads v2" "$n" FTKV_DIR="$A" EXPECT_VERSION=2 EXPECT_REPAIRED=0 -- check; done
step "advance to v3" 3 FTKV_DIR="$A" EXPECT_VERSION=2 -- advance
step "restart loads v3" 5 FTKV_DIR="$A" EXPECT_STATE=3 EXPECT_VERSION=3 -- check
if [ -d "$A/ckpt/v000000000001" ] || ! [ -d "$A/ckpt/v000000000002" ] || ! [ -d "$A/ckpt/v000000000003" ]; then
    echo "  FAIL keep=2: versions on disk: $(ls "$A/ckpt" | tr '\n' ' ')"
    failed=$((failed + 1))
else
    echo "  ok   keep=2: versions on disk: $(ls "$A/ckpt" | tr '\n' ' ')"
fi
step "ftkv_load=2 names an older version" 2 FTKV_DIR="$A" FTKV_LOAD=2 EXPECT_VERSION=2 -- check
verify 0 "$A"
step "commit unchanged: files reused as hard links" 5 FTKV_DIR="$A" EXPECT_STATE=3 EXPECT_VERSION=3 -- recommit
links="$(stat -c %h "$A"/ckpt/v000000000006/r*.dat | sort -u | tr '\n' ' ')"
if [ "$links" = "2 " ] && [ "$(ls "$A/ckpt" | tr '\n' ' ')" = "v000000000005 v000000000006 " ]; then
    echo "  ok   versions 5 and 6 share version 4's files (link count 2), version 4's directory is gone"
else
    echo "  FAIL hard links: counts '$links', versions $(ls "$A/ckpt" | tr '\n' ' ')"
    failed=$((failed + 1))
fi
step "restart from linked files" 2 FTKV_DIR="$A" EXPECT_STATE=3 EXPECT_VERSION=6 EXPECT_REPAIRED=0 -- check
verify 0 "$A"
if "$FTKV" verify --progress "$A" 2>&1 >/dev/null | grep -q '100%'; then echo "  ok   ftkv verify --progress draws a bar"; else echo "  FAIL ftkv verify --progress drew no bar"; failed=$((failed + 1)); fi
if "$FTKV" inspect "$A" | grep -q 'version 6: complete.*5 ranks' && "$FTKV" inspect "$A" | grep -q 'base file of version 4, hard-linked'; then echo "  ok   ftkv inspect: $("$FTKV" inspect "$A" | grep -m1 'version 6' | cut -c1-140)"; else echo "  FAIL ftkv inspect"; "$FTKV" inspect "$A"; failed=$((failed + 1)); fi

scenario "B. one directory per rank (FTKV_DIR, FTKV_NODE per rank): restart on fewer and more ranks, then with one directory deleted"
B="$WORK/b"
PER_RANK="$B" killed "write v1, v2, then die" 4 "killing the job" -- write
PER_RANK="$B" step "3 ranks: node3's directory unreachable" 3 EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
PER_RANK="$B" step "6 ranks: two empty directories" 6 EXPECT_VERSION=2 EXPECT_REPAIRED=0 -- check
rm -rf "$B/node1"
verify 1 "$B"/node*
PER_RANK="$B" step "4 ranks, node1's directory deleted" 4 EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
PER_RANK="$B" step "advance to v3 with node1 rebuilt" 4 EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- advance
rm -rf "$B/node2"
PER_RANK="$B" step "v3 with node2's directory deleted" 4 EXPECT_STATE=3 EXPECT_VERSION=3 EXPECT_REPAIRED=1 -- check

scenario "C. one copy per key: a deleted directory loses keys; kv_open says so on every rank"
C="$WORK/c"
PER_RANK="$C" killed "write v1, v2, then die (1 copy)" 4 "killing the job" FTKV_REPLICAS=1 -- write
rm -rf "$C/node2"
PER_RANK="$C" step "KV_EDATALOSS naming r000002.dat" 4 FTKV_REPLICAS=1 EXPECT_LOST="r000002.dat" -- expect-loss
verify 2 "$C"/node*

scenario "D. damaged files (one shared directory, 2 copies): each repaired from a replica, never wrong bytes"
D="$WORK/d"
killed "write v1, v2, then die" 4 "killing the job" FTKV_DIR="$D.pristine" -- write
V2="$D/ckpt/v000000000002"
damage() { # NAME command...: fresh copy, damage it, restart
    rm -rf "$D"
    cp -a "$D.pristine" "$D"
    local name="$1"
    shift
    ( cd "$V2" && "$@" )
}
flip() { printf '\x5a' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
damage "flip a record byte" flip r000001.dat 300000
step "a record's byte flipped" 4 FTKV_DIR="$D" EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
verify 1 "$D"
damage "flip a header byte" flip r000000.dat 20
step "a header byte flipped" 3 FTKV_DIR="$D" EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
verify 1 "$D"
flip_tail() { flip "$1" $(($(stat -c %s "$1") - 3)); }
damage "flip the trailer" flip_tail r000003.dat
step "a trailer byte flipped" 4 FTKV_DIR="$D" EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
verify 1 "$D"
damage "truncate" truncate -s 50000 r000002.dat
step "a file truncated" 5 FTKV_DIR="$D" EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
verify 1 "$D"
damage "delete" rm r000003.dat
step "a file deleted" 4 FTKV_DIR="$D" EXPECT_VERSION=2 EXPECT_REPAIRED=1 -- check
verify 1 "$D"
damage "flip a manifest copy" flip MANIFEST-r000000 30
step "one manifest copy damaged" 4 FTKV_DIR="$D" EXPECT_VERSION=2 EXPECT_REPAIRED=0 -- check
verify 1 "$D"
damage "delete every manifest copy" sh -c 'rm MANIFEST-*'
step "no manifest: v2 incomplete, v1 loads" 4 FTKV_DIR="$D" EXPECT_STATE=1 EXPECT_VERSION=1 EXPECT_REPAIRED=0 -- check

scenario "E. commit failures and deaths at each step of the commit protocol"
E="$WORK/e"
killed "write v1, v2, then die" 4 "killing the job" FTKV_DIR="$E" -- write
step "rank 2 cannot write its data: KV_EIO everywhere" 4 FTKV_DIR="$E" FTKV_TEST_FAULT=commit-write FTKV_TEST_FAULT_RANK=2 EXPECT_VERSION=2 -- commit-fail
step "rank 0 cannot publish: KV_EIO everywhere" 4 FTKV_DIR="$E" FTKV_TEST_FAULT=commit-publish FTKV_TEST_FAULT_RANK=0 EXPECT_VERSION=2 -- commit-fail
step "after both: v2 intact" 4 FTKV_DIR="$E" EXPECT_VERSION=2 -- check
killed "rank 1 dies once its data is durable, before reporting it" 4 "state 2 checked" FTKV_DIR="$E" FTKV_TEST_FAULT=die-after-data FTKV_TEST_FAULT_RANK=1 FTKV_TIMEOUT=5 -- advance
step "restart after a death before the commit point: v2" 3 FTKV_DIR="$E" EXPECT_VERSION=2 EXPECT_STATE=2 -- check
killed "rank 1 dies right after publishing its manifest copy" 4 "state 2 checked" FTKV_DIR="$E" FTKV_TEST_FAULT=die-after-publish FTKV_TEST_FAULT_RANK=1 FTKV_TIMEOUT=5 -- advance
step "restart after a death after publishing: the new version" 4 FTKV_DIR="$E" EXPECT_STATE=3 -- check
E2="$WORK/e2"
killed "write v1, v2, then die" 4 "killing the job" FTKV_DIR="$E2" -- write
killed "rank 1 dies after every rank's data is durable, before its manifest copy" 4 "state 2 checked" FTKV_DIR="$E2" FTKV_TEST_FAULT=die-before-publish FTKV_TEST_FAULT_RANK=1 FTKV_TIMEOUT=5 -- advance
step "restart: another rank published, the new version" 4 FTKV_DIR="$E2" EXPECT_STATE=3 EXPECT_VERSION=3 -- check

scenario "I. a directory that cannot be one (a path under a regular file)"
step "FTKV_DIR=/etc/passwd/ftkv: kv_commit says KV_EIO, the handle stays usable" 2 FTKV_DIR=/etc/passwd/ftkv KEYS_TOTAL=300 BIG_BYTES=$((1 << 20)) EXPECT_RC=-6 -- big

scenario "G. the second tier (FTKV_FLUSH_DIR, shared): flushed in the background; every node directory lost"
G="$WORK/g"
PER_RANK="$G" killed "write v1, v2, wait for the flush, then die" 4 "killing the job" FTKV_FLUSH_DIR="$G/pfs" WAIT_FLUSH=1 -- write
grep -m1 'flushed to the second tier' "$LOG" | sed 's/^/         /'
verify 0 "$G/pfs"
rm -rf "$G"/node*
PER_RANK="$G" step "every node directory gone: v2 from the second tier" 3 FTKV_FLUSH_DIR="$G/pfs" EXPECT_VERSION=2 EXPECT_REPAIRED=0 -- check
PER_RANK="$G" step "advance to v3 (node directories rebuilt)" 4 FTKV_FLUSH_DIR="$G/pfs" EXPECT_VERSION=2 -- advance
step "an unusable flush directory: the commit stands, kv_flush_status says KV_EIO" 2 FTKV_DIR="$G/h" FTKV_FLUSH_DIR=/etc/passwd/not-a-dir -- flush-fail

scenario "H. delta commits: a base file and deltas of what changed; a damaged or deleted delta repaired from a replica"
H="$WORK/h"
killed "write v1, v2, then die" 4 "killing the job" FTKV_DIR="$H.pristine" -- write
step "commit a base, then three deltas" 4 FTKV_DIR="$H.pristine" EXPECT_VERSION=2 -- chain
if "$FTKV" inspect "$H.pristine" | grep -q 'version 6: .*' && "$FTKV" inspect "$H.pristine" | grep -q '+ 3 delta(s) of versions 4,5,6'; then
    echo "  ok   ftkv inspect: $("$FTKV" inspect "$H.pristine" | grep -m1 '+ 3 delta' | sed 's/^ *//' | cut -c1-150)"
else
    echo "  FAIL ftkv inspect shows no chain of 3 deltas"; "$FTKV" inspect "$H.pristine" | tail -n 8; failed=$((failed + 1))
fi
verify 0 "$H.pristine"
V6="$H/ckpt/v000000000006"
dmg() { rm -rf "$H"; cp -a "$H.pristine" "$H"; ( cd "$V6" && "$@" ); }
step "restart from base + deltas" 3 FTKV_DIR="$H.pristine" EXPECT_STATE=3 EXPECT_VERSION=6 EXPECT_REPAIRED=0 -- check
dmg flip r000001.d000000000005.dat 100
verify 1 "$H"
step "a delta's byte flipped: that rank's part from replicas" 4 FTKV_DIR="$H" EXPECT_STATE=3 EXPECT_VERSION=6 EXPECT_REPAIRED=1 -- check
dmg rm r000002.d000000000006.dat
verify 1 "$H"
step "a delta deleted" 5 FTKV_DIR="$H" EXPECT_STATE=3 EXPECT_VERSION=6 EXPECT_REPAIRED=1 -- check
dmg flip r000003.dat 5000
step "a base file's byte flipped under its deltas" 4 FTKV_DIR="$H" EXPECT_STATE=3 EXPECT_VERSION=6 EXPECT_REPAIRED=1 -- check

scenario "F. a full filesystem (6 MiB tmpfs) during kv_commit"
F="$WORK/full"
mkdir -p "$F"
if mount -t tmpfs -o size=6m tmpfs "$F"; then
    MOUNTED="$F"
    killed "write v1, v2 (small), then die" 2 "killing the job" FTKV_DIR="$F" KEYS_TOTAL=300 -- write
    step "8 MiB per rank does not fit: KV_EIO everywhere, handle usable" 2 FTKV_DIR="$F" KEYS_TOTAL=300 BIG_BYTES=$((8 << 20)) EXPECT_RC=-6 -- big
    step "restart after the failed commit: v2" 2 FTKV_DIR="$F" KEYS_TOTAL=300 EXPECT_VERSION=2 -- check
    echo "         tmpfs after the failed commit: $(df -h --output=used "$F" | tail -1 | tr -d ' ') used"
    if mount -o remount,ro "$F"; then
        step "a read-only file system: KV_EIO everywhere" 2 FTKV_DIR="$F" KEYS_TOTAL=300 BIG_BYTES=$((1 << 20)) EXPECT_RC=-6 -- big
        step "restart from the read-only file system: v2" 3 FTKV_DIR="$F" KEYS_TOTAL=300 EXPECT_VERSION=2 -- check
    else
        echo "  FAIL cannot remount the tmpfs read-only"
        failed=$((failed + 1))
    fi
    umount "$F" && MOUNTED=""
else
    echo "  FAIL cannot mount a tmpfs (run as root)"
    failed=$((failed + 1))
fi

echo
if [ "$failed" -eq 0 ]; then echo "restart scenarios: all passed"; else echo "restart scenarios: $failed failed"; fi
[ "$failed" -eq 0 ]
