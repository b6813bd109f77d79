import Glibc

/// Bytes of one message, malloc'd so an allocation failure is a result code, not a trap.
/// Kept alive until the MPI operation that reads or writes it has completed.
public final class MessageBuffer {
    public let base: UnsafeMutableRawPointer
    public private(set) var count: Int
    private var capacity: Int

    public init?(capacity: Int) {
        guard capacity >= 0 else { return nil }
        if let (p, c) = BufferPool.take(atLeast: capacity) {
            base = p
            self.capacity = c
        } else {
            guard let p = malloc(max(capacity, 1)) else { return nil }
            base = p
            self.capacity = max(capacity, 1)
        }
        count = 0
    }

    /// Takes ownership of malloc'd bytes (a finished ByteWriter's), without copying.
    init(adopting p: UnsafeMutableRawPointer, count: Int, capacity: Int) {
        base = p
        self.count = count
        self.capacity = capacity
    }

    deinit { BufferPool.release(base, capacity: capacity) }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Marks `n` bytes written directly at `base` (e.g. by MPI_Mrecv).
    func setCount(_ n: Int) { count = n }
}

/// Appends little-endian fields to a growable buffer (messages are built once, then sent).
struct ByteWriter {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var count = 0
    private var capacity = 0

    init(reserving n: Int) throws {
        try reserve(n)
    }

    mutating func reserve(_ extra: Int) throws {
        guard count + extra > capacity else { return }
        if base == nil, let (p, c) = BufferPool.take(atLeast: extra) {
            base = p
            capacity = c
            return
        }
        var c = max(capacity * 2, count + extra <= 256 ? count + extra : 256)
        while c < count + extra { c *= 2 }
        guard let p = realloc(base, c) else { throw KVFailure(.noMemory, "cannot allocate a \(c)-byte message") }
        base = p
        capacity = c
    }

    mutating func append<T: FixedWidthInteger>(_ v: T) throws {
        try reserve(MemoryLayout<T>.size)
        base.unsafelyUnwrapped.storeBytes(of: v.littleEndian, toByteOffset: count, as: T.self)
        count += MemoryLayout<T>.size
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        try reserve(bytes.count)
        memcpy(base.unsafelyUnwrapped + count, bytes.baseAddress!, bytes.count)
        count += bytes.count
    }

    /// Hands the bytes over as a MessageBuffer, without copying (this writer is then empty).
    mutating func finish() throws -> MessageBuffer {
        if base == nil { try reserve(1) }
        let out = MessageBuffer(adopting: base!, count: count, capacity: capacity)
        base = nil
        count = 0
        capacity = 0
        return out
    }

    func release() {
        if let base { BufferPool.release(base, capacity: capacity) }
    }
}

/// Large message buffers (batches of a fence or a re-replication) released recently, kept for
/// the next ones. A fresh buffer costs a page fault per page at first touch (the kernel zeroes
/// it; in a virtual machine the host may too): profiled, that zeroing was the largest single cost
/// of shipping bulk data, ahead of the copies themselves. At most `maxPooledBytes` are kept.
enum BufferPool {
    static let minBytes = 1 << 20
    static let maxPooledBytes = 64 << 20
    nonisolated(unsafe) private static var free: [(pointer: UnsafeMutableRawPointer, capacity: Int)] = []
    nonisolated(unsafe) private static var pooledBytes = 0
    private static let lock = FTKVLock()

    /// A pooled buffer of at least `bytes` (and at most twice that, so small messages do not pin
    /// big buffers), malloc-compatible; nil: allocate one.
    static func take(atLeast bytes: Int) -> (UnsafeMutableRawPointer, Int)? {
        guard bytes >= minBytes else { return nil }
        return lock.withLock {
            guard let i = free.firstIndex(where: { $0.capacity >= bytes && $0.capacity / 2 <= bytes }) else { return nil }
            let b = free.remove(at: i)
            pooledBytes -= b.capacity
            return (b.pointer, b.capacity)
        }
    }

    /// Keeps a malloc'd buffer for reuse, or frees it.
    static func release(_ p: UnsafeMutableRawPointer, capacity: Int) {
        if capacity >= minBytes {
            let kept = lock.withLock { () -> Bool in
                guard pooledBytes + capacity <= maxPooledBytes else { return false }
                free.append((p, capacity))
                pooledBytes += capacity
                return true
            }
            if kept { return }
        }
        Glibc.free(p)
    }
}

/// Reads little-endian fields; every read is bounds-checked so a malformed message is an error.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws -> T {
        guard remaining >= MemoryLayout<T>.size else { throw KVFailure(.remote, "malformed message: truncated field") }
        let v = T(littleEndian: bytes.baseAddress!.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func read(count n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, remaining >= n else { throw KVFailure(.remote, "malformed message: truncated bytes") }
        let slice = UnsafeRawBufferPointer(start: bytes.baseAddress.map { $0 + offset }, count: n)
        offset += n
        return slice
    }
}
