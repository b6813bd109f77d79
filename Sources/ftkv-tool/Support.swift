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
