import CPlatform
import Glibc

/// One rank's part of a committed version: every live record the rank held as a replica, each
/// with its own checksum, between a header and a trailer (layout in docs/format.md). Little-endian,
/// records 8-byte aligned.
public enum DataFileFormat {
    public static let formatVersion: UInt32 = 1
    static let headerMagic: UInt64 = 0x4154_4144_564B_5446 // "FTKVDATA"
    static let trailerMagic: UInt64 = 0x2E44_4E45_564B_5446 // "FTKVEND."
    public static let headerSize = 64
    public static let trailerSize = 32
    public static let recordHeaderSize = 40
    static let tombstoneFlag: UInt32 = 1

    @inline(__always)
    static func recordSize(keyLen: Int, valueLen: Int) -> Int { (recordHeaderSize + keyLen + valueLen + 7) & ~7 }

    public struct Header: Equatable {
        public var storeVersion: UInt64
        public var writerRank: UInt32
        public var rankCount: UInt32
    }

    public struct Trailer: Equatable {
        public var records: UInt64
        public var payloadBytes: UInt64
        public var chain: UInt32
    }

    static func encode(_ h: Header) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: headerSize)
        b.withUnsafeMutableBytes { p in
            p.storeBytes(of: headerMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: formatVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: UInt32(headerSize).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: h.storeVersion.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: h.writerRank.littleEndian, toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: h.rankCount.littleEndian, toByteOffset: 28, as: UInt32.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<60]))
            p.storeBytes(of: crc.littleEndian, toByteOffset: 60, as: UInt32.self)
        }
        return b
    }

    static func encode(_ t: Trailer) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: trailerSize)
        b.withUnsafeMutableBytes { p in
            p.storeBytes(of: trailerMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: t.records.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: t.payloadBytes.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: t.chain.littleEndian, toByteOffset: 24, as: UInt32.self)
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<28]))
            p.storeBytes(of: crc.littleEndian, toByteOffset: 28, as: UInt32.self)
        }
        return b
    }

    @inline(__always)
    static func load<T: FixedWidthInteger>(_ p: UnsafeRawBufferPointer, _ offset: Int, _: T.Type) -> T {
        T(littleEndian: p.baseAddress!.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// The header in `bytes` (at least headerSize), or why it is not one.
    public static func parseHeader(_ p: UnsafeRawBufferPointer) -> Result<Header, DataFileDamage> {
        guard p.count >= headerSize else { return .failure(.init(offset: 0, "file shorter than its header")) }
        guard load(p, 0, UInt64.self) == headerMagic else { return .failure(.init(offset: 0, "not an ftkv data file (bad magic)")) }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<60]))
        guard load(p, 60, UInt32.self) == crc else { return .failure(.init(offset: 0, "header checksum mismatch")) }
        let version = load(p, 8, UInt32.self)
        guard version == formatVersion else { return .failure(.init(offset: 8, "format version \(version), this library reads \(formatVersion)")) }
        guard load(p, 12, UInt32.self) == UInt32(headerSize) else { return .failure(.init(offset: 12, "unexpected header size")) }
        return .success(Header(storeVersion: load(p, 16, UInt64.self), writerRank: load(p, 24, UInt32.self),
                               rankCount: load(p, 28, UInt32.self)))
    }

    public static func parseTrailer(_ p: UnsafeRawBufferPointer, at offset: Int) -> Result<Trailer, DataFileDamage> {
        guard p.count >= trailerSize else { return .failure(.init(offset: offset, "file shorter than its trailer")) }
        guard load(p, 0, UInt64.self) == trailerMagic else { return .failure(.init(offset: offset, "no trailer (truncated or overwritten file)")) }
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[0..<28]))
        guard load(p, 28, UInt32.self) == crc else { return .failure(.init(offset: offset, "trailer checksum mismatch")) }
        return .success(Trailer(records: load(p, 8, UInt64.self), payloadBytes: load(p, 16, UInt64.self), chain: load(p, 24, UInt32.self)))
    }

    /// The lengths a record header at the start of `p` claims, checked against the limits and
    /// against `room` (bytes left before the trailer); returns the record's padded size.
    static func recordExtent(_ p: UnsafeRawBufferPointer, room: Int) -> Int? {
        guard p.count >= recordHeaderSize else { return nil }
        let keyLen = Int(load(p, 4, UInt32.self))
        let valueLen = Int(load(p, 8, UInt32.self))
        guard keyLen >= 1, keyLen <= Engine.maxKeyLength, valueLen <= Engine.maxValueLength else { return nil }
        let size = recordSize(keyLen: keyLen, valueLen: valueLen)
        return size <= room ? size : nil
    }

    /// A whole record at the start of `p` (recordExtent bytes), if its checksum holds.
    static func parseRecord(_ p: UnsafeRawBufferPointer) -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, stamp: Stamp, tombstone: Bool, crc: UInt32)? {
        guard p.count >= recordHeaderSize else { return nil }
        let keyLen = Int(load(p, 4, UInt32.self))
        let valueLen = Int(load(p, 8, UInt32.self))
        guard keyLen >= 1, recordHeaderSize + keyLen + valueLen <= p.count else { return nil }
        let stored = load(p, 0, UInt32.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: p[4..<(recordHeaderSize + keyLen + valueLen)]))
        let flags = load(p, 12, UInt32.self)
        // Flags: 0 a value, 1 a tombstone (delta files only), which has no value bytes.
        guard crc == stored, flags <= tombstoneFlag, flags == 0 || valueLen == 0 else { return nil }
        let stamp = Stamp(fence: load(p, 16, UInt64.self), rank: load(p, 32, UInt32.self), seq: load(p, 24, UInt64.self))
        let base = p.baseAddress!
        return (UnsafeRawBufferPointer(start: base + recordHeaderSize, count: keyLen),
                UnsafeRawBufferPointer(start: base + recordHeaderSize + keyLen, count: valueLen), stamp, flags == tombstoneFlag, crc)
    }
}

/// Where and why a data file is damaged.
public struct DataFileDamage: Error, CustomStringConvertible {
    public let offset: Int
    public let reason: String
    init(offset: Int, _ reason: String) {
        self.offset = offset
        self.reason = reason
    }
    public var description: String { "\(reason) at byte \(offset)" }
}

/// Writes one data file: buffered, checksummed record by record, fsynced by `finish`.
public final class DataFileWriter {
    public struct Summary: Equatable {
        public var bytes: UInt64
        public var records: UInt64
        public var chain: UInt32
    }

    public let path: String
    private var fd: Int32
    private let buffer: UnsafeMutableRawPointer
    private let capacity: Int
    private var used = 0
    private var written = 0
    private var records: UInt64 = 0
    private var chain: UInt32 = 0

    public init(path: String, header: DataFileFormat.Header, bufferBytes: Int = 8 << 20) throws {
        guard let b = malloc(bufferBytes) else { throw KVFailure(.noMemory, "cannot allocate a \(bufferBytes)-byte write buffer") }
        buffer = b
        capacity = bufferBytes
        self.path = path
        // A new inode, never truncation: the name may be a hard link to an older version's file.
        unlink(path)
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            free(b)
            throw FileSystem.failure("cannot create", path)
        }
        let h = DataFileFormat.encode(header)
        h.withUnsafeBytes { memcpy(buffer, $0.baseAddress!, $0.count) }
        used = h.count
    }

    deinit {
        if fd >= 0 { close(fd) }
        free(buffer)
    }

    /// Appends a record; a tombstone (delta files only) carries no value.
    public func append(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, stamp: Stamp, tombstone: Bool = false) throws {
        let value = tombstone ? UnsafeRawBufferPointer(start: nil, count: 0) : value
        let size = DataFileFormat.recordSize(keyLen: key.count, valueLen: value.count)
        var head = (UInt32(0), UInt32(key.count).littleEndian, UInt32(value.count).littleEndian,
                    (tombstone ? DataFileFormat.tombstoneFlag : 0).littleEndian,
                    stamp.fence.littleEndian, stamp.seq.littleEndian, stamp.rank.littleEndian, UInt32(0))
        var crc = withUnsafeBytes(of: &head) { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[4..<DataFileFormat.recordHeaderSize])) }
        crc = CRC32C.checksum(key, continuing: crc)
        crc = CRC32C.checksum(value, continuing: crc)
        head.0 = crc.littleEndian
        var le = crc.littleEndian
        chain = withUnsafeBytes(of: &le) { CRC32C.checksum($0, continuing: chain) }
        records += 1
        if used + size > capacity { try drain() }
        if size <= capacity {
            let p = buffer + used
            withUnsafeBytes(of: &head) { memcpy(p, $0.baseAddress!, DataFileFormat.recordHeaderSize) }
            memcpy(p + DataFileFormat.recordHeaderSize, key.baseAddress!, key.count)
            if value.count > 0 { memcpy(p + DataFileFormat.recordHeaderSize + key.count, value.baseAddress!, value.count) }
            let pad = size - DataFileFormat.recordHeaderSize - key.count - value.count
            if pad > 0 { memset(p + size - pad, 0, pad) }
            used += size
        } else {
            // Bigger than the buffer (values up to 1 GiB): straight from the caller's bytes.
            try withUnsafeBytes(of: &head) { try put(UnsafeRawBufferPointer(rebasing: $0[0..<DataFileFormat.recordHeaderSize])) }
            try put(key)
            try put(value)
            var zeros: UInt64 = 0
            let pad = size - DataFileFormat.recordHeaderSize - key.count - value.count
            try withUnsafeBytes(of: &zeros) { try put(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) }
        }
    }

    /// Writes the trailer, fsyncs and closes. The file is complete only when this returns.
    public func finish() throws -> Summary {
        let payload = UInt64(written + used - DataFileFormat.headerSize)
        let t = DataFileFormat.encode(DataFileFormat.Trailer(records: records, payloadBytes: payload, chain: chain))
        if used + t.count > capacity { try drain() }
        t.withUnsafeBytes { memcpy(buffer + used, $0.baseAddress!, $0.count) }
        used += t.count
        try drain()
        guard fsync(fd) == 0 else { throw FileSystem.failure("cannot fsync", path) }
        let result = close(fd)
        fd = -1
        guard result == 0 else { throw FileSystem.failure("cannot close", path) }
        return Summary(bytes: UInt64(written), records: records, chain: chain)
    }

    /// Closes and removes a file that will not be finished.
    public func abandon() {
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(path)
    }

    private func put(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        try FileSystem.writeAll(fd, bytes, path: path)
        written += bytes.count
    }

    private func drain() throws {
        let start = written
        try put(UnsafeRawBufferPointer(start: buffer, count: used))
        used = 0
        // Start writing these bytes to disk now, while the next buffer is filled: the final fsync
        // then waits for the tail only. Advisory: a failure shows up in fsync.
        _ = cplatform_start_writeback(fd, Int64(start), Int64(written - start))
    }
}

/// Reads a data file (from disk or, for tests, from memory) in bounded chunks with read(2), not
/// mmap: a file truncated under a mapping would raise SIGBUS and kill the job; a short read is
/// just damage.
public final class DataFileReader {
    public let path: String
    public let size: Int
    private let fd: Int32
    private let memory: [UInt8]?
    private var buffer: UnsafeMutableRawPointer?
    private var bufferCapacity = 0
    private var windowStart = 0
    private var windowCount = 0
    static let chunkBytes = 8 << 20

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystem.failure("cannot open", path) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let f = FileSystem.failure("cannot stat", path)
            close(fd)
            throw f
        }
        size = Int(st.st_size)
        memory = nil
    }

    /// A reader over bytes in memory (tests and fuzzing).
    public init(bytes: [UInt8], name: String = "<memory>") {
        path = name
        fd = -1
        size = bytes.count
        memory = bytes
    }

    deinit {
        if fd >= 0 { close(fd) }
        free(buffer)
    }

    /// `count` bytes at `offset`, or nil past the end / on a read failure. Valid until the next call.
    private func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, count >= 0, offset + count <= size else { return nil }
        if let memory {
            return memory.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + count)]) }
        }
        if offset >= windowStart && offset + count <= windowStart + windowCount, let buffer {
            return UnsafeRawBufferPointer(start: buffer + (offset - windowStart), count: count)
        }
        let want = min(max(count, DataFileReader.chunkBytes), size - offset)
        if want > bufferCapacity {
            guard let grown = realloc(buffer, want) else { return nil }
            buffer = grown
            bufferCapacity = want
        }
        var done = 0
        while done < want {
            let n = pread(fd, buffer! + done, want - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { windowCount = 0; return nil }
            done += n
        }
        windowStart = offset
        windowCount = want
        return UnsafeRawBufferPointer(start: buffer!, count: count)
    }

    public func header() -> Result<DataFileFormat.Header, DataFileDamage> {
        guard let p = bytes(at: 0, count: DataFileFormat.headerSize) else {
            return .failure(DataFileDamage(offset: 0, "file of \(size) bytes is shorter than its header"))
        }
        return DataFileFormat.parseHeader(p)
    }

    public func trailer() -> Result<DataFileFormat.Trailer, DataFileDamage> {
        let at = size - DataFileFormat.trailerSize
        guard at >= DataFileFormat.headerSize, let p = bytes(at: at, count: DataFileFormat.trailerSize) else {
            return .failure(DataFileDamage(offset: max(at, 0), "file of \(size) bytes has no room for a trailer"))
        }
        switch DataFileFormat.parseTrailer(p, at: at) {
        case .failure(let d): return .failure(d)
        case .success(let t):
            guard t.payloadBytes == UInt64(at - DataFileFormat.headerSize) else {
                return .failure(DataFileDamage(offset: at, "trailer says \(t.payloadBytes) bytes of records, the file holds \(at - DataFileFormat.headerSize)"))
            }
            return .success(t)
        }
    }

    /// Calls `body` with every record whose checksum holds, in file order, up to the first damage.
    /// Returns the number of good records and the damage found (nil: the whole file verified,
    /// header, trailer, record count and the chain of record checksums included).
    @discardableResult
    public func forEachRecord(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ stamp: Stamp, _ tombstone: Bool) throws -> Void) rethrows
        -> (records: UInt64, damage: DataFileDamage?) {
        if case .failure(let d) = header() { return (0, d) }
        let trailerResult = trailer()
        // Without a trailer the end of the records is unknown: read up to the end of the file.
        let end: Int
        switch trailerResult {
        case .success: end = size - DataFileFormat.trailerSize
        case .failure: end = size
        }
        var offset = DataFileFormat.headerSize
        var count: UInt64 = 0
        var chain: UInt32 = 0
        while offset < end {
            guard let head = bytes(at: offset, count: min(DataFileFormat.recordHeaderSize, end - offset)),
                  let extent = DataFileFormat.recordExtent(head, room: end - offset) else {
                return (count, DataFileDamage(offset: offset, "record \(count) has impossible lengths"))
            }
            guard let whole = bytes(at: offset, count: extent), let rec = DataFileFormat.parseRecord(whole) else {
                return (count, DataFileDamage(offset: offset, "record \(count) fails its checksum"))
            }
            try body(rec.key, rec.value, rec.stamp, rec.tombstone)
            var le = rec.crc.littleEndian
            chain = withUnsafeBytes(of: &le) { CRC32C.checksum($0, continuing: chain) }
            count += 1
            offset += extent
        }
        switch trailerResult {
        case .failure(let d): return (count, d)
        case .success(let t):
            guard t.records == count else {
                return (count, DataFileDamage(offset: offset, "trailer counts \(t.records) records, the file holds \(count)"))
            }
            guard t.chain == chain else { return (count, DataFileDamage(offset: offset, "record checksum chain mismatch")) }
            return (count, nil)
        }
    }
}

extension DataFileReader {
    /// Reads the file that `part` of a manifest describes (written by `rank`), passing every
    /// intact record to `body`. Returns nil when it is exactly that file, else why not: it cannot
    /// be opened, is damaged, or its header, record count or checksum chain is not the manifest's.
    /// Restart loading and ftkv verify both read files through here.
    public static func readPart(_ path: String, _ part: Manifest.Part, rank: Int,
                                _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ stamp: Stamp,
                                         _ tombstone: Bool) throws -> Void) rethrows -> String? {
        guard let reader = try? DataFileReader(path: path) else { return "cannot be opened" }
        switch reader.header() {
        case .failure(let d): return d.description
        case .success(let h):
            guard h.storeVersion == part.written, h.writerRank == UInt32(rank) else {
                return "its header names version \(h.storeVersion), rank \(h.writerRank)"
            }
        }
        let (count, damage) = try reader.forEachRecord(body)
        if let damage { return damage.description }
        guard count == part.records else { return "holds \(count) records, the manifest says \(part.records)" }
        if case .success(let t) = reader.trailer(), t.chain != part.chain { return "its checksum chain differs from the manifest's" }
        return nil
    }
}
