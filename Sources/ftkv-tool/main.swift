import Glibc

// The `ftkv` command.
let usage = """
usage: ftkv <command> [options]
  inspect DIR...                the committed versions on disk: ranks, nodes, keys, sizes, where
                                each rank's file is and how copies were placed (manifests only)
  verify [--version N] [--progress] DIR...
                                read every copy of every file, check every checksum and that
                                every key has an intact copy; exit 0 intact, 1 damaged but
                                repairable, 2 keys lost
  bench [--keys N] [--gets N] [--json PATH]
                                benchmark the store under mpirun (e.g. mpirun -n 2 ftkv bench)
  bench-commit [--mib N] [--value-kib K] [--dir DIR] [--keep | --load-only]
                                kv_commit and restart-load bandwidth beside write+fsync (mpirun)
  bench-recovery [--mib N] [--value-kib K]
                                a rank killed: detection, shrink and re-replication times and
                                throughput beside MPI bandwidth (mpirun --enable-recovery, 3+ ranks)
  serve --port-file PATH | --name NAME [--secret-file F] [--replicas R] [--timeout S]
                                serve a store to client jobs (kv_connect) from every rank of
                                this mpirun job; stops on `ftkv stop` or SIGTERM
  stop --port-file PATH | --name NAME | --port PORT
                                ask a server to stop (secret from the port file or FTKV_SECRET)
  bench-client ADDRESS [--ops N]
                                a client job measuring a store server: put/get rates and 1 MiB
                                MiB/s beside an echo through the server, MPI ping-pong and an
                                embedded store, all in the same run
  version                       print the library version
DIR is an ftkv_dir (FTKV_DIR) or one store's directory in it; give one per node for node-local
directories.
"""

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "inspect":
    exit(Inspect.run(arguments: Array(args.dropFirst())))
case "verify":
    exit(Verify.run(arguments: Array(args.dropFirst())))
case "bench-commit":
    exit(CommitBench.run(arguments: Array(args.dropFirst())))
case "bench-recovery":
    exit(RecoveryBench.run(arguments: Array(args.dropFirst())))
case "serve":
    exit(Serve.run(arguments: Array(args.dropFirst())))
case "bench-client":
    exit(ClientBench.run(arguments: Array(args.dropFirst())))
case "stop":
    exit(Serve.stop(arguments: Array(args.dropFirst())))
case "bench":
    exit(Bench.run(arguments: Array(args.dropFirst())))
case "version", "--version":
    print("ftkv \(FTKVVersionText.string)")
case "help", "--help", "-h":
    print(usage)
default:
    FileHandle.standardError(usage)
    exit(2)
}
