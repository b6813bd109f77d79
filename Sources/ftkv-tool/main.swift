import Glibc

// The `ftkv` command. Subcommands grow with the project (inspect, verify, serve come later).
let usage = """
usage: ftkv <command> [options]
  bench [--keys N] [--gets N]   benchmark the store under mpirun (e.g. mpirun -n 2 ftkv bench)
  version                       print the library version
"""

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
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
