#!/usr/bin/env bash
# scripts/demo.sh - `make demo`: install missing dependencies, build and install libftkv into
# build/stage, build the C examples against it with pkg-config, and run the checkpoint/restart demo
# (examples-c/demo.c) on 4 ranks. Ends by saying whether the restarted run matched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MAKE="${MAKE:-make}"
STAGE="$ROOT/build/stage"

echo "== 1/4 dependencies"
bash scripts/install-deps.sh
command -v swift >/dev/null 2>&1 || export PATH="$PATH:/opt/swift/usr/bin"

echo "== 2/4 build and install libftkv into build/stage (release, Swift runtime linked in)"
"$MAKE" --no-print-directory install PREFIX="$STAGE" DESTDIR=

echo "== 3/4 build the C examples with pkg-config"
export PKG_CONFIG_PATH="$STAGE/lib/pkgconfig"
"$MAKE" --no-print-directory -C examples-c

echo "== 4/4 run the demo: killed on 4 ranks, restarted on 3, killed, restarted on 5 (scripts/demo-chain.sh)"
exec bash scripts/demo-chain.sh examples-c/bin/demo "$ROOT/build/demo-run"
