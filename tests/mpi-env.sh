# shellcheck shell=bash
# tests/mpi-env.sh - the one place that says how libftkv's scripts run MPI jobs.
#
# Source it, then call:
#     ftkv_mpirun NRANKS TIMEOUT_SECONDS [mpirun-options...] program [args...]
# e.g.
#     . tests/mpi-env.sh
#     ftkv_mpirun 4 60 ./build/tests/hello
#     ftkv_mpirun 4 120 --enable-recovery ./build/tests/kill-one
#
# It exports the OMPI_* variables needed here (run as root, stay on the loopback interface) and runs
#     timeout --kill-after=10 $((T+15)) mpirun --oversubscribe --bind-to none --timeout T -n N ...
# returning mpirun's exit code (124/137 if timeout(1) had to step in). Anything between
# TIMEOUT_SECONDS and the program is passed to mpirun as options. --timeout lets mpirun itself end
# a hung job and clean up its ranks (a killed mpirun orphans them); the outer timeout is only a
# backstop. When gdb is installed, --get-stack-traces is added so a hung job's ranks print their
# stacks before being killed (tests/tools/gstack provides the gstack that Open MPI calls).
# Extra mpirun options can also be given in FTKV_MPIRUN_EXTRA (split on spaces).
# FTKV_MPIRUN_TRACES=0 turns the stack traces off.

export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_btl_tcp_if_include=lo

FTKV_MPI_ENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

ftkv_mpirun() {
    if [ "$#" -lt 3 ]; then
        echo "usage: ftkv_mpirun NRANKS TIMEOUT_SECONDS [mpirun-options...] program [args...]" >&2
        return 2
    fi
    local n="$1" t="$2"
    shift 2
    case "$n$t" in
        *[!0-9]*) echo "ftkv_mpirun: NRANKS and TIMEOUT_SECONDS must be integers (got '$n' '$t')" >&2
                  return 2 ;;
    esac
    local -a extra=()
    if [ -n "${FTKV_MPIRUN_EXTRA:-}" ]; then
        # shellcheck disable=SC2206
        extra=(${FTKV_MPIRUN_EXTRA})
    fi
    local path="$PATH"
    if [ "${FTKV_MPIRUN_TRACES:-1}" != 0 ] && command -v gdb >/dev/null 2>&1; then
        extra+=(--get-stack-traces)
        command -v gstack >/dev/null 2>&1 || path="$FTKV_MPI_ENV_DIR/tools:$PATH"
    fi
    local rc=0
    PATH="$path" timeout --kill-after=10 $((t + 15)) \
        mpirun --oversubscribe --bind-to none --timeout "$t" -n "$n" "${extra[@]}" "$@" || rc=$?
    return "$rc"
}
