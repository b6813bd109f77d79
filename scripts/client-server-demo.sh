#!/usr/bin/env bash
# scripts/client-server-demo.sh - a store served by one MPI job to two others (docs/client-server.md).
#   1. ompi-server (the name service that lets separate mpirun jobs find each other), on loopback
#   2. `ftkv serve` on 2 ranks, writing its port file (port name and secret, mode 0600)
#   3. a client job of 2 ranks writes and ends; a client job of 3 ranks reads everything back
#   4. `ftkv stop`, then ompi-server is stopped (by PID)
# Usage: bash scripts/client-server-demo.sh [PREFIX]   (PREFIX: an install, default build/stage)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${1:-$ROOT/build/stage}"
. "$ROOT/tests/mpi-env.sh"
WORK="$(mktemp -d /tmp/ftkv-client-server.XXXXXX)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

make -s -C "$ROOT/examples-c" PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" bin/client >/dev/null

ompi-server --no-daemonize -r "$WORK/uri" &
pids+=($!)
for _ in $(seq 100); do [ -s "$WORK/uri" ] && break; sleep 0.1; done
echo "ompi-server: $(cat "$WORK/uri")"

mpirun --oversubscribe --bind-to none --timeout 300 -n 2 --ompi-server "file:$WORK/uri" \
    "$PREFIX/bin/ftkv" serve --port-file "$WORK/port" &
pids+=($!)
for _ in $(seq 300); do [ -f "$WORK/port" ] && break; sleep 0.1; done

ftkv_mpirun 2 120 --ompi-server "file:$WORK/uri" "$ROOT/examples-c/bin/client" "file:$WORK/port" write
ftkv_mpirun 3 120 --ompi-server "file:$WORK/uri" "$ROOT/examples-c/bin/client" "file:$WORK/port" read 2
ftkv_mpirun 1 60 --ompi-server "file:$WORK/uri" "$PREFIX/bin/ftkv" stop --port-file "$WORK/port"
wait "${pids[1]}"
echo "client/server demo: ok"
