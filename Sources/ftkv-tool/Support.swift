import FTKV
import FTKVCore
import Glibc

enum FTKVVersionText {
    static var string: String { LibraryVersion.string }
}

enum FileHandle {
    static func standardError(_ text: String) {
        fputs(text + "\n", stderr)
    }
}

/// A failure of the tool itself (bad usage), printed as its text.
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

/// Runs a benchmark's body with MPI initialised (MPI_THREAD_MULTIPLE) and finalised after it:
/// 0 on success, 1 with the error on stderr.
func runUnderMPI(_ command: String, _ body: () throws -> Void) -> Int32 {
    _ = MPIEnvironment.initialize(threadLevel: .multiple)
    defer { MPIEnvironment.finalize() }
    do {
        try body()
        return 0
    } catch {
        FileHandle.standardError("ftkv \(command): rank \(MPIEnvironment.rank): \(error)")
        return 1
    }
}

/// Wall-clock seconds, monotonic.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// CPU seconds used by this whole process (all threads).
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
