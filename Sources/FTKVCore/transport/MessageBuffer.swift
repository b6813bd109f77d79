import Glibc

/// Bytes of one message, malloc'd so an allocation failure is a result code, not a trap.
/// Kept alive until the MPI operation that reads or writes it has completed.
public final class MessageBuffer {
    public let base: UnsafeMutableRawPointer
    public private(set) var count: Int
    private var capacity: Int
    /// Where the bytes go back when the message is freed (nil: to malloc). Set only for a buffer
    /// of the pool's size (a writer that outgrew one hands it over as an ordinary buffer).
    private let pool: BatchBufferPool?

    public init?(capacity: Int) {
        guard capacity >= 0, let p = malloc(max(capacity, 1)) else { return nil }
        base = p
        self.capacity = max(capacity, 1)
        count = 0
        pool = nil
    }

    /// A buffer from `pool` (given back on deinit), for a message of up to `pool.bufferBytes`.
    init?(pool: BatchBufferPool) {
        guard let p = pool.take() else { return nil }
        base = p
        capacity = pool.bufferBytes
        count = 0
        self.pool = pool
    }

    /// Takes ownership of malloc'd bytes (a finished ByteWriter's), without copying; bytes that
    /// came from `pool` go back to it.
    init(adopting p: UnsafeMutableRawPointer, count: Int, capacity: Int, pool: BatchBufferPool? = nil) {
        base = p
        self.count = count
        self.capacity = capacity
        self.pool = pool
    }

    deinit {
        if let pool { pool.give(base) } else { free(base) }
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Marks `n` bytes written directly at `base` (e.g. by MPI_Mrecv).
    func setCount(_ n: Int) { count = n }
}

/// Appends little-endian fields to a growable buffer (messages are built once, then sent).
struct ByteWriter {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var count = 0
    private var capacity = 0
    /// The pool `base` came from, while it has its pooled size (growth past it leaves the pool).
    private var pool: BatchBufferPool?

    init(reserving n: Int) throws {
        try reserve(n)
    }

    /// A writer into one of `pool`'s buffers (a full-size fence batch).
    init(pooled pool: BatchBufferPool) throws {
        guard let p = pool.take() else {
            throw KVFailure(.noMemory, "cannot allocate a \(pool.bufferBytes)-byte message")
        }
        base = p
        capacity = pool.bufferBytes
        self.pool = pool
    }

    mutating func reserve(_ extra: Int) throws {
        guard count + extra > capacity else { return }
        var c = max(capacity * 2, count + extra <= 256 ? count + extra : 256)
        while c < count + extra { c *= 2 }
        guard let p = realloc(base, c) else { throw KVFailure(.noMemory, "cannot allocate a \(c)-byte message") }
        base = p
        capacity = c
        pool = nil // pooled buffers are malloc'd: this one is now an ordinary, bigger one
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
        let out = MessageBuffer(adopting: base!, count: count, capacity: capacity, pool: pool)
        base = nil
        count = 0
        capacity = 0
        pool = nil
        return out
    }

    func release() {
        guard let base else { return }
        if let pool { pool.give(base) } else { free(base) }
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
