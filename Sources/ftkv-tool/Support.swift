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

/// Writing freshly mapped memory (huge-page advised, as the store's tables are, or on 4 KiB pages,
/// as the pending writes and batch buffers are): the kernel zeroes every page on first touch. A
/// first checkpoint interval fills its tables from empty, and a re-replication grows them by the
/// copies it restores, so this bounds how fast either can go. Returns the rate in GB/s and the
/// mapping, which the caller unmaps.
func firstTouch(bytes: Int, hugePages: Bool = true) -> (Double, UnsafeMutableRawPointer?) {
    guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
          p != MAP_FAILED else { return (0, nil) }
    _ = madvise(p, bytes, hugePages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)
    let t0 = now()
    memset(p, 1, bytes)
    return (Double(bytes) / (now() - t0) / 1e9, p)
}
