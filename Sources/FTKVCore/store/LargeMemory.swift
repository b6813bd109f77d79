import Glibc

/// Big tables live in memory advised for transparent huge pages: with 4 KiB pages, a random probe
/// into a store of tens of MiB pays a TLB miss on top of the cache miss (measured: ~45% of a
/// local get each for the slot and the record). Small requests use plain malloc.
enum LargeMemory {
    static let hugePage = 2 << 20

    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= hugePage else { return malloc(max(bytes, 1)) }
        var p: UnsafeMutableRawPointer?
        let rounded = (bytes + hugePage - 1) & ~(hugePage - 1)
        guard posix_memalign(&p, hugePage, rounded) == 0, let p else { return nil }
        _ = madvise(p, rounded, MADV_HUGEPAGE) // advice only: fine if the kernel declines
        return p
    }

    /// Grows `old` (holding `used` meaningful bytes) to `bytes`.
    static func reallocate(_ old: UnsafeMutableRawPointer?, used: Int, to bytes: Int) -> UnsafeMutableRawPointer? {
        guard bytes >= hugePage else { return realloc(old, bytes) }
        guard let fresh = allocate(bytes) else { return nil }
        if let old, used > 0 { memcpy(fresh, old, used) }
        free(old)
        return fresh
    }
}
