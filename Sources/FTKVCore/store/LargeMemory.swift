import CPlatform
import Glibc

/// Memory for big tables. Buffers of 2 MiB and more are anonymous mappings, for the store advised
/// for transparent huge pages: with 4 KiB pages a random probe into tens of MiB pays a TLB miss on
/// top of the cache miss (measured: ~45% of a local get each for the slot and the record). Mappings also come
/// zeroed (no memset of fresh slot arrays) and grow with mremap (no copy of the arena into fresh
/// pages the kernel must zero first: page faults were 38% of the first checkpoint interval).
/// Smaller buffers use malloc. The caller keeps each buffer's byte size and passes it back.
enum LargeMemory {
    static let hugePage = 2 << 20

    static func isMapped(_ bytes: Int) -> Bool { bytes >= hugePage }

    /// The size actually reserved for a request (mapped sizes round up to huge pages).
    static func roundedSize(_ bytes: Int) -> Int {
        isMapped(bytes) ? (bytes + hugePage - 1) & ~(hugePage - 1) : max(bytes, 1)
    }

    /// `zeroed`: the caller needs zero bytes (mapped memory always is). `hugePages`: advise
    /// transparent huge pages: faster random reads later, and one fault per 2 MiB at first touch.
    /// On this VM a 4 KiB fault costs a steady 1.8 us (2.2 GB/s); a huge page 6-8 GB/s when the
    /// kernel has free ones from a process that just ended, 0.4 GB/s when it has not (after a
    /// while, or after a job that used small pages), docs/benchmarks.md. So only tables that
    /// serve many random reads (the store) ask for them, not the pending writes, and the store only
    /// where ftkv_huge_pages (HugePagePolicy) says so.
    static func allocate(_ bytes: Int, zeroed: Bool, hugePages: Bool) -> UnsafeMutableRawPointer? {
        let size = roundedSize(bytes)
        guard isMapped(size) else { return zeroed ? calloc(1, size) : malloc(size) }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let p, p != MAP_FAILED else { return nil }
        if hugePages { _ = madvise(p, size, MADV_HUGEPAGE) } // advice only: fine if declined
        return p
    }

    /// Grows a buffer of `oldBytes` (reserved size, from roundedSize) holding `used` meaningful bytes.
    static func reallocate(_ old: UnsafeMutableRawPointer?, oldBytes: Int, used: Int, to bytes: Int,
                           hugePages: Bool) -> UnsafeMutableRawPointer? {
        let size = roundedSize(bytes)
        guard let old else { return allocate(size, zeroed: false, hugePages: hugePages) }
        if !isMapped(size) { return realloc(old, size) }
        if isMapped(oldBytes) {
            guard let p = cplatform_mremap_grow(old, oldBytes, size) else { return nil }
            if hugePages { _ = madvise(p, size, MADV_HUGEPAGE) }
            return p
        }
        guard let fresh = allocate(size, zeroed: false, hugePages: hugePages) else { return nil }
        if used > 0 { memcpy(fresh, old, used) }
        free(old)
        return fresh
    }

    /// Faults in `bytes` from `p` (page-aligned, inside a mapping) in one system call
    /// (`MADV_POPULATE_WRITE`, Linux 5.14) instead of the page fault per 4 KiB page that writing
    /// them would take. Only for pages about to be written: they become resident. Kernels
    /// without it refuse, and the writes fault the pages in as before.
    static func populate(_ p: UnsafeMutableRawPointer, bytes: Int) {
        _ = madvise(p, bytes, MADV_POPULATE_WRITE)
    }

    /// Gives up a buffer that something outside Swift's control (an MPI receive that could not
    /// be cancelled) may still write into: never unmapped or freed, so a late write cannot land
    /// in memory reused for something else; a mapping's pages go back to the kernel (a late write
    /// faults in a fresh page). Costs address space only, plus a malloc block if small.
    static func abandon(_ p: UnsafeMutableRawPointer?, bytes: Int) {
        guard let p, isMapped(bytes) else { return }
        _ = madvise(p, bytes, MADV_DONTNEED)
    }

    static func release(_ p: UnsafeMutableRawPointer?, bytes: Int) {
        guard let p else { return }
        if isMapped(bytes) { munmap(p, bytes) } else { free(p) }
    }
}
