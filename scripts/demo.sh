#!/usr/bin/env bash
# scripts/demo.sh - `make demo`: install missing dependencies, build and install libftkv into
# build/stage, build the C examples against it with pkg-config, and run the checkpoint/restart demo
# (examples-c/demo.c): first a rank killed and the survivors recovering online, then the
# checkpoint/restart chain. Ends by saying whether the restarted run matched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MAKE="${MAKE:-make}"
STAGE="$ROOT/build/stage"

echo "== 1/5 dependencies"
bash scripts/install-deps.sh
command -v swift >/dev/null 2>&1 || export PATH="$PATH:/opt/swift/usr/bin"

echo "== 2/5 build and install libftkv into build/stage (release, Swift runtime linked in)"
"$MAKE" --no-print-directory install PREFIX="$STAGE" DESTDIR=

echo "== 3/5 build the C examples with pkg-config"
export PKG_CONFIG_PATH="$STAGE/lib/pkgconfig"
"$MAKE" --no-print-directory -C examples-c

echo "== 4/5 online recovery: a rank killed on 4 ranks, the 3 survivors carry on (scripts/demo-online.sh)"
bash scripts/demo-online.sh examples-c/bin/demo "$ROOT/build/demo-online"

echo
echo "== 5/5 checkpoint/restart: killed on 4 ranks, restarted on 3, killed, restarted on 5 (scripts/demo-chain.sh)"
exec bash scripts/demo-chain.sh examples-c/bin/demo "$ROOT/build/demo-run"
