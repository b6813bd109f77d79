#!/bin/sh
# per-rank-dir.sh BASE program [args...] - run program with its own "node-local" directory:
# FTKV_DIR=BASE/node<rank> and FTKV_NODE=node<rank>, as on a cluster with one rank per node.
base="$1"
shift
rank="${OMPI_COMM_WORLD_RANK:?not started by Open MPI's mpirun}"
FTKV_DIR="$base/node$rank" FTKV_NODE="node$rank" exec "$@"
