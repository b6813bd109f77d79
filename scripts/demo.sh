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

echo "== 4/4 run the demo on 4 ranks: mpirun -n 4 examples-c/bin/demo"
# shellcheck source=tests/mpi-env.sh
. tests/mpi-env.sh
mkdir -p build
set +e
ftkv_mpirun 4 180 examples-c/bin/demo 2>&1 | tee build/demo.log
rc=${PIPESTATUS[0]}
set -e
echo
if [ "$rc" -eq 0 ] && grep -q '^PASS' build/demo.log; then
    echo "demo: the answer checked out: after losing its state and restoring it from libftkv, the"
    echo "      simulation ended bitwise identical to an uninterrupted run."
    exit 0
fi
echo "demo: the answer did NOT check out (exit status $rc); see build/demo.log" >&2
exit 1
