import Glibc

/// Full-size fence batch buffers (`Wire.fenceChunkBytes`), sent and received, kept for reuse.
/// Freed 4 MiB buffers went back to the kernel (glibc unmaps or trims them), so every fence wrote
/// its batches and received its peers' into fresh pages the kernel had to fault in and zero:
/// 8,600 page faults per fence of 200,000 puts at 2 ranks, a third of the fence's time on this VM
/// (docs/benchmarks.md). Buffers come from malloc, so a writer may still realloc one; only
/// buffers of exactly `bufferBytes` come back. Any thread may give one back (a message is freed
/// wherever it was last used), hence the lock.
final class BatchBufferPool: @unchecked Sendable {
    let bufferBytes: Int
    /// Buffers kept between uses at most (the rest are freed): what one fence has in use at once,
    /// its window of unacknowledged batches plus an open batch and a received one.
    let keep: Int
    private let lock = FTKVLock()
    private var idle: [UnsafeMutableRawPointer] = []
    /// Buffers handed out by `take` that came from malloc rather than from `idle` (for tests).
    private(set) var allocated = 0

    init(bufferBytes: Int = Wire.fenceChunkBytes, keep: Int) {
        self.bufferBytes = bufferBytes
        self.keep = keep
        idle.reserveCapacity(keep)
    }

    deinit { for p in idle { free(p) } }

    /// Whether a message of `bytes` should live in a pooled buffer: full-size ones (a fence's
    /// batches but the last of each destination are within a few hundred bytes of it).
    func fits(_ bytes: Int) -> Bool { bytes > bufferBytes / 2 && bytes <= bufferBytes }

    /// A buffer of `bufferBytes`, reused if one is idle; nil if out of memory.
    func take() -> UnsafeMutableRawPointer? {
        lock.lock()
        if let p = idle.popLast() {
            lock.unlock()
            return p
        }
        allocated += 1
        lock.unlock()
        return malloc(bufferBytes)
    }

    /// Takes back a buffer of `bufferBytes` from `take` (kept, or freed when `keep` are idle).
    func give(_ p: UnsafeMutableRawPointer) {
        lock.lock()
        if idle.count < keep {
            idle.append(p) // capacity reserved in init: no allocation here
            lock.unlock()
        } else {
            lock.unlock()
            free(p)
        }
    }

    var idleCount: Int { lock.withLock { idle.count } }
}
