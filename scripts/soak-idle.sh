#!/usr/bin/env bash
# scripts/soak-idle.sh [SECONDS] [RANKS] [HEARTBEAT] - false-suspicion soak: RANKS ranks (default 8)
# open a store and stay away from the library for SECONDS (default 600), half sleeping, half
# spinning the CPU, with ftkv_heartbeat HEARTBEAT (default 0.1) and the default suspicion time;
# then no rank may report a failed rank (tests/mpi/heartbeat.c). Needs build/stage (make stage).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_IDLE="${1:-600}"
RANKS="${2:-8}"
HB="${3:-0.1}"
STAGE="$ROOT/build/stage"
# shellcheck source=tests/mpi-env.sh
. "$ROOT/tests/mpi-env.sh"
BIN="$(mktemp /tmp/ftkv-heartbeat.XXXXXX)"
trap 'rm -f "$BIN"' EXIT
mpicc -std=c99 -O1 -g -Wall -Wextra "$ROOT/tests/mpi/heartbeat.c" -o "$BIN" -I"$ROOT/tests/mpi" \
    -I"$STAGE/include" -L"$STAGE/lib" -Wl,-rpath,"$STAGE/lib" -lftkv || exit 1
HB_IDLE="$SECONDS_IDLE" FTKV_HEARTBEAT="$HB" ftkv_mpirun "$RANKS" $((SECONDS_IDLE + 120)) -x HB_IDLE -x FTKV_HEARTBEAT "$BIN"
