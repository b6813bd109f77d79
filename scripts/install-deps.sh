#!/usr/bin/env bash
# scripts/install-deps.sh [--with-gdb]
# Installs what building and testing libftkv needs on Debian/Ubuntu, only if it is missing:
#   Open MPI (mpicc, mpicxx, mpifort, mpirun, ompi-c.pc), gfortran, pkg-config; gdb with
#   --with-gdb (stack traces of hung MPI jobs). Runs `apt-get update` once, and only when something
#   has to be installed. Uses sudo only when not root. Checks that a Swift toolchain is available.
set -euo pipefail

with_gdb=0
for arg in "$@"; do
    case "$arg" in
        --with-gdb) with_gdb=1 ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "install-deps.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

have() { command -v "$1" >/dev/null 2>&1; }

pkgs=()
have mpicc && have mpicxx && have mpirun || pkgs+=(libopenmpi-dev openmpi-bin)
have mpifort && have gfortran || pkgs+=(gfortran libopenmpi-dev)
have pkg-config || pkgs+=(pkg-config)
if have pkg-config && ! pkg-config --exists ompi-c; then pkgs+=(libopenmpi-dev); fi
[ "$with_gdb" = 0 ] || have gdb || pkgs+=(gdb)
# make, a C compiler, readelf/nm/strip (binutils) come with build-essential on most machines.
have make && have gcc && have nm && have readelf && have strip || pkgs+=(build-essential binutils)

if [ "${#pkgs[@]}" -gt 0 ]; then
    # Deduplicate.
    mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    echo "install-deps: installing ${pkgs[*]}"
    if ! have apt-get; then
        echo "install-deps: no apt-get here; install by hand: ${pkgs[*]} (Open MPI, gfortran, pkg-config)" >&2
        exit 1
    fi
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if have sudo; then sudo=(sudo); else
            echo "install-deps: not root and no sudo; run as root: apt-get install ${pkgs[*]}" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q "${pkgs[@]}"
else
    echo "install-deps: Open MPI, gfortran and pkg-config are already installed"
fi

# The Swift toolchain cannot come from apt on Debian 12.
if have swift; then
    echo "install-deps: swift: $(command -v swift)"
elif [ -x /opt/swift/usr/bin/swift ]; then
    echo "install-deps: swift: /opt/swift/usr/bin/swift (not on PATH; the Makefile adds it)"
else
    cat >&2 <<'MSG'
install-deps: no Swift toolchain found (neither `swift` on PATH nor /opt/swift/usr/bin/swift).
  libftkv needs Swift 6.x (tested with 6.3.1). Get the Linux toolchain for your distribution from
  https://www.swift.org/install/linux/ (e.g. the Debian 12 tarball), unpack it so that
  /opt/swift/usr/bin/swift exists (or put its usr/bin on PATH), then run this again.
MSG
    exit 1
fi
