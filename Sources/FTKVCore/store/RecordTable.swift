import CPlatform
import Glibc

/// One record seen through a table. The buffers are borrowed: valid until the table next changes.
public struct RecordView {
    public let key: UnsafeRawBufferPointer
    public let value: UnsafeRawBufferPointer
    public let stamp: Stamp
    public let isTombstone: Bool
    public let hash: UInt64
}

/// A hash table of byte-string keys to the latest record (value or tombstone, with its stamp),
/// stored in one growable arena with open addressing over it. Per-entry arrays cost two
/// allocations and refcounting per key (measured ~3x slower, see NOTES); this keeps puts and gets
/// to a probe and a memcpy. An overwrite of the same size is done in place; otherwise the new
/// record is appended and the old one counted as garbage, compacted once garbage dominates.
/// Allocation failures are reported as KVFailure(.noMemory), never a trap.
public final class RecordTable {
    // Record layout in the arena, 8-byte aligned:
    // 0 keyLen u32 | 4 valueLen u32 | 8 stamp.fence u64 | 16 stamp.seq u64 | 24 stamp.rank u32 |
    // 28 flags u32 | 32 key bytes | value bytes | padding to 8.
    static let headerSize = 32
    static let tombstoneFlag: UInt32 = 1
    /// Set on every record written since the last `markAllUnchanged` (kv_commit's delta files).
    static let changedFlag: UInt32 = 2
    /// Set on a record a newer one replaced or the index dropped: arena garbage, skipped by
    /// `forEachInWriteOrder`.
    static let garbageFlag: UInt32 = 4

    /// An index entry in 8 bytes: a table larger than the caches keeps more of its index cached
    /// (docs/benchmarks.md). Low 40 bits: the record's offset / 8 + 1, 0 for an empty slot
    /// (records are 8-byte aligned, so the arena reaches 8 TiB); high 24 bits: the top of the
    /// key's hash, which tells most other keys apart without reading their records. Where the
    /// whole hash is needed again (rehash, iteration) it is recomputed from the key (`keyHash`).
    struct Slot {
        var bits: UInt64
        static let offsetMask: UInt64 = (1 << 40) - 1
        /// The arena size the offsets can address.
        static let maxArenaBytes = Int(offsetMask - 1) << 3

        @inline(__always) init(hash: UInt64, offset: Int) {
            bits = (hash & ~Slot.offsetMask) | (UInt64(truncatingIfNeeded: offset >> 3) + 1)
        }
        @inline(__always) var isEmpty: Bool { bits == 0 }
        @inline(__always) var offset: Int { Int(truncatingIfNeeded: (bits & Slot.offsetMask) &- 1) << 3 }
        /// Whether the entry may be of a key with this hash (its top bits agree).
        @inline(__always) func matches(_ hash: UInt64) -> Bool { (bits ^ hash) & ~Slot.offsetMask == 0 }
        @inline(__always) mutating func setOffset(_ offset: Int) {
            bits = (bits & ~Slot.offsetMask) | (UInt64(truncatingIfNeeded: offset >> 3) + 1)
        }
    }

    // Internal (not private) for the extensions in RecordTable+*.swift; not the table's interface.
    var arena: UnsafeMutableRawPointer?
    var arenaCapacity = 0
    var arenaUsed = 0
    /// Where the record after the one `find` last returned starts (-1 once the arena's layout
    /// changed: compaction, removeAll), and whether that last record was itself found there. A
    /// reader going through keys in the order they were written (a restart reading back its
    /// checkpoint) then finds each record next to the previous one, a line the CPU has usually
    /// fetched already, without the index slot's cache miss. A record that is not garbage is
    /// the one the index holds for its key, so a key match there is the answer.
    var recordAfterLast = -1
    var readingInWriteOrder = false

    /// Arena bytes faulted in ahead of the writer (`populateArena`); a hint only: pages below it
    /// may have been given back, pages above it may be resident, and either just costs a fault.
    var arenaPopulated = 0
    /// How far ahead appends fault the arena in: one system call per this many bytes.
    static let populateStep = 2 << 20
    var garbageBytes = 0
    var slots: UnsafeMutablePointer<Slot>
    var slotCount: Int
    static let initialSlots = 256

    /// The counters below, as of the indexed records (see `appendDeferred`).
    struct Tally {
        var count = 0
        var liveCount = 0
        var liveBytes = 0
        var mutations: UInt64 = 0
        var changedRecords = 0
    }
    var tally = Tally()

    /// Keys present (tombstones included).
    public var count: Int { indexDeferred(); return tally.count }
    /// Nothing held, not even writes waiting to be indexed: a lookup need not probe.
    public var isEmpty: Bool { tally.count == 0 && deferredCount == 0 }
    /// Keys whose latest record is a value.
    public var liveCount: Int { indexDeferred(); return tally.liveCount }
    /// Key and value bytes of the live records.
    public var liveBytes: Int { indexDeferred(); return tally.liveBytes }

    /// Changes of content so far (writes and deletes applied, removeAll): equal counts mean equal
    /// content (kv_commit reuses an unchanged rank's previous data file).
    public var mutations: UInt64 { indexDeferred(); return tally.mutations }

    /// Records written (values or tombstones) since the last `markAllUnchanged`.
    public var changedRecords: Int { indexDeferred(); return tally.changedRecords }
    /// Whether a change was forgotten since the last `markAllUnchanged` (a tombstone written
    /// since then was reclaimed): a delta of the changes would be incomplete.
    public internal(set) var changesForgotten = false

    /// Writes whose record is in the arena but not yet in the index (`appendDeferred`): the last
    /// `deferredCount` records of the arena, from `deferredStart` on, in write order. Every other
    /// entry point indexes them first, so only that method sees them (and nothing else appends
    /// while they wait).
    var deferredStart = 0
    var deferredCount = 0

    /// Bytes after the last record that MPI is filling with records from other ranks
    /// (RecordTable+Transfer.swift), nil when none: appends wait for them.
    var receiving: Int?

    /// Arena bytes written so far, garbage included (for tests and memory accounting).
    var arenaBytesInUse: Int { arenaUsed }

    /// Bytes allocated for the records and the index (reserved: pages count once mapped, touched
    /// or not), for kv_stat.
    public var allocatedBytes: Int { arenaCapacity + RecordTable.slotBytes(slotCount) }

    /// Whether big allocations ask for huge pages (see LargeMemory): yes for tables that serve
    /// many random reads (a store), no for write-once buffers (a writer's pending table).
    let hugePages: Bool

    /// The hash every caller gives with a key (the index keeps only its top bits).
    let keyHash: (UnsafeRawBufferPointer) -> UInt64

    public init(hugePages: Bool = true, keyHash: @escaping (UnsafeRawBufferPointer) -> UInt64 = { StableHash.hash($0) }) {
        // 4 KiB: if even this fails, the process cannot create a Swift object either.
        self.hugePages = hugePages
        self.keyHash = keyHash
        slotCount = RecordTable.initialSlots
        slots = RecordTable.allocateSlots(slotCount, hugePages: hugePages)!
    }

    deinit {
        RecordTable.releaseSlots(slots, slotCount)
        LargeMemory.release(arena, bytes: arenaCapacity)
    }

    /// Zeroed slots (all empty), or nil when memory is short.
    static func allocateSlots(_ n: Int, hugePages: Bool) -> UnsafeMutablePointer<Slot>? {
        guard let raw = LargeMemory.allocate(slotBytes(n), zeroed: true, hugePages: hugePages) else { return nil }
        return raw.bindMemory(to: Slot.self, capacity: n)
    }

    static func slotBytes(_ n: Int) -> Int { LargeMemory.roundedSize(n * MemoryLayout<Slot>.stride) }

    static func releaseSlots(_ slots: UnsafeMutablePointer<Slot>, _ n: Int) {
        LargeMemory.release(UnsafeMutableRawPointer(slots), bytes: slotBytes(n))
    }

    // MARK: reading

    public func find(_ key: UnsafeRawBufferPointer, hash: UInt64) -> RecordView? {
        // An emptied table keeps its slots: probing them would cost a cache miss for nothing
        // (the pending table after every fence, on every get).
        indexDeferred()
        guard tally.count > 0 else { return nil }
        if readingInWriteOrder {
            let next = recordAfterLast
            if next >= 0, next <= arenaUsed - RecordTable.headerSize - key.count, keyEquals(atOffset: next, key),
               !header(atOffset: next).garbage {
                return viewFollowingWriteOrder(atOffset: next, hash: hash)
            }
        }
        let (slot, found) = probe(key, hash: hash)
        guard found else { readingInWriteOrder = false; return nil }
        let offset = slots[slot].offset
        readingInWriteOrder = offset == recordAfterLast
        return viewFollowingWriteOrder(atOffset: offset, hash: hash)
    }

    /// The record `find` returns, noting where the next one in write order starts.
    @inline(__always)
    private func viewFollowingWriteOrder(atOffset offset: Int, hash: UInt64) -> RecordView {
        let record = view(atOffset: offset, hash: hash)
        recordAfterLast = offset + RecordTable.recordSize(keyLen: record.key.count, valueLen: record.value.count)
        return record
    }

    public func forEach(_ body: (RecordView) throws -> Void) rethrows {
        indexDeferred()
        for i in 0..<slotCount where !slots[i].isEmpty {
            try body(view(atOffset: slots[i].offset))
        }
    }

    /// The same records in the order they were written (arena order), for one pass over many: a
    /// sequential walk the CPU prefetches, where `forEach` (index order) costs a cache miss per
    /// record on a table larger than the caches (most of a fence's own time). The arena does not
    /// keep hashes: each is recomputed (`keyHash`).
    public func forEachInWriteOrder(_ body: (RecordView) throws -> Void) rethrows {
        indexDeferred() // marks the records they replaced
        var offset = 0
        while offset < arenaUsed {
            let h = header(atOffset: offset)
            let size = RecordTable.recordSize(keyLen: h.keyLen, valueLen: h.valueLen)
            if !h.garbage {
                let keyStart = arena.unsafelyUnwrapped + offset + RecordTable.headerSize
                let key = UnsafeRawBufferPointer(start: keyStart, count: h.keyLen)
                try body(RecordView(key: key, value: UnsafeRawBufferPointer(start: keyStart + h.keyLen, count: h.valueLen),
                                    stamp: h.stamp, isTombstone: h.tombstone, hash: keyHash(key)))
            }
            offset += size
        }
    }

    /// Starts loading the index slot where a probe for `hash` begins (see PrefetchingApplier).
    @inline(__always)
    func prefetchSlot(hash: UInt64) {
        cplatform_prefetch(slots + (Int(truncatingIfNeeded: hash) & (slotCount - 1)))
    }

    /// Starts loading the record that slot points to, once the slot itself has arrived: the key
    /// compare of an overwrite reads it.
    @inline(__always)
    func prefetchRecord(hash: UInt64) {
        let slot = slots[Int(truncatingIfNeeded: hash) & (slotCount - 1)]
        if !slot.isEmpty { cplatform_prefetch(arena.unsafelyUnwrapped + slot.offset) }
    }

    /// The records (values and tombstones) written since the last `markAllUnchanged`.
    public func forEachChanged(_ body: (RecordView) throws -> Void) rethrows {
        indexDeferred()
        for i in 0..<slotCount where !slots[i].isEmpty {
            let offset = slots[i].offset
            guard arena.unsafelyUnwrapped.load(fromByteOffset: offset + 28, as: UInt32.self) & RecordTable.changedFlag != 0 else { continue }
            try body(view(atOffset: offset))
        }
    }

    /// Forgets which records changed (after kv_commit wrote them).
    public func markAllUnchanged() {
        indexDeferred()
        for i in 0..<slotCount where !slots[i].isEmpty {
            let p = arena.unsafelyUnwrapped + slots[i].offset + 28
            p.storeBytes(of: p.load(as: UInt32.self) & ~RecordTable.changedFlag, as: UInt32.self)
        }
        tally.changedRecords = 0
        changesForgotten = false
    }

    // MARK: writing

    /// Sets key's record. With `onlyIfNewer`, a record whose stamp is not newer than the present
    /// one is ignored (returns false): replicas converge whatever the arrival order.
    @discardableResult
    public func upsert(_ key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer,
                       stamp: Stamp, tombstone: Bool, onlyIfNewer: Bool) throws -> Bool {
        indexDeferred()
        let valueCount = tombstone ? 0 : value.count
        let (slot, found) = probe(key, hash: hash)
        if found {
            let offset = slots[slot].offset
            let old = header(atOffset: offset)
            if onlyIfNewer && !(stamp > old.stamp) { return false }
            if old.valueLen == valueCount {
                writeRecord(atOffset: offset, key: nil, value: value, valueCount: valueCount, stamp: stamp, tombstone: tombstone)
            } else {
                // May throw (no memory): counters are only touched once the write has happened.
                let newOffset = try append(key: key, value: value, valueCount: valueCount, stamp: stamp, tombstone: tombstone)
                retire(atOffset: offset, old)
                slots[slot].setOffset(newOffset)
            }
            countReplaced(old)
        } else {
            try growSlotsIfNeeded()
            let newOffset = try append(key: key, value: value, valueCount: valueCount, stamp: stamp, tombstone: tombstone)
            // growSlotsIfNeeded may have moved slots: probe again for the free slot.
            let (freeSlot, _) = probe(key, hash: hash)
            insert(inSlot: freeSlot, hash: hash, offset: newOffset)
        }
        countWritten(keyLen: key.count, valueLen: valueCount, tombstone: tombstone)
        try compactIfWorthIt()
        return true
    }

    // MARK: internals

    @inline(__always)
    static func recordSize(keyLen: Int, valueLen: Int) -> Int {
        (headerSize + keyLen + valueLen + 7) & ~7
    }

    struct Header {
        var keyLen: Int
        var valueLen: Int
        var stamp: Stamp
        var tombstone: Bool
        var changed: Bool
        var garbage: Bool
    }

    @inline(__always)
    func header(atOffset offset: Int) -> Header {
        let p = arena.unsafelyUnwrapped + offset
        return Header(
            keyLen: Int(p.load(as: UInt32.self)),
            valueLen: Int(p.load(fromByteOffset: 4, as: UInt32.self)),
            stamp: Stamp(fence: p.load(fromByteOffset: 8, as: UInt64.self),
                         rank: p.load(fromByteOffset: 24, as: UInt32.self),
                         seq: p.load(fromByteOffset: 16, as: UInt64.self)),
            tombstone: p.load(fromByteOffset: 28, as: UInt32.self) & RecordTable.tombstoneFlag != 0,
            changed: p.load(fromByteOffset: 28, as: UInt32.self) & RecordTable.changedFlag != 0,
            garbage: p.load(fromByteOffset: 28, as: UInt32.self) & RecordTable.garbageFlag != 0)
    }

    func markGarbage(atOffset offset: Int) {
        let p = arena.unsafelyUnwrapped + offset + 28
        p.storeBytes(of: p.load(as: UInt32.self) | RecordTable.garbageFlag, as: UInt32.self)
    }

    /// Makes the record at `offset` (its header `h`) garbage: replaced or dropped.
    func retire(atOffset offset: Int, _ h: Header) {
        markGarbage(atOffset: offset)
        garbageBytes += RecordTable.recordSize(keyLen: h.keyLen, valueLen: h.valueLen)
    }

    /// Indexes a key's first record, at `offset`, in the free `slot`.
    func insert(inSlot slot: Int, hash: UInt64, offset: Int) {
        slots[slot] = Slot(hash: hash, offset: offset)
        tally.count += 1
        tally.changedRecords += 1
    }

    /// The counters of a key's record `old`, replaced by a new one (in place or not).
    func countReplaced(_ old: Header) {
        if !old.changed { tally.changedRecords += 1 }
        if !old.tombstone {
            tally.liveCount -= 1
            tally.liveBytes -= old.keyLen + old.valueLen
        }
    }

    /// The counters of a record just written, new or replacing.
    func countWritten(keyLen: Int, valueLen: Int, tombstone: Bool) {
        if !tombstone {
            tally.liveCount += 1
            tally.liveBytes += keyLen + valueLen
        }
        tally.mutations &+= 1
    }

    /// Indexes the record just appended at `offset` (with its key's `hash`; the index already
    /// has room) as `upsert` would: the key's present record is retired, or with `onlyIfNewer`
    /// the new one is, unless its stamp is newer. For records appended unindexed: deferred writes
    /// and records received from other ranks.
    @inline(__always)
    func indexAppended(atOffset offset: Int, hash: UInt64, onlyIfNewer: Bool) {
        let h = header(atOffset: offset)
        let (slot, found) = probe(key(atOffset: offset), hash: hash)
        if found {
            let oldOffset = slots[slot].offset
            let old = header(atOffset: oldOffset)
            if onlyIfNewer && !(h.stamp > old.stamp) {
                retire(atOffset: offset, h)
                return
            }
            retire(atOffset: oldOffset, old)
            slots[slot].setOffset(offset)
            countReplaced(old)
        } else {
            insert(inSlot: slot, hash: hash, offset: offset)
        }
        countWritten(keyLen: h.keyLen, valueLen: h.valueLen, tombstone: h.tombstone)
    }

    /// The record at `offset`, with its key's hash (recomputed when not given).
    @inline(__always)
    private func view(atOffset offset: Int, hash: UInt64? = nil) -> RecordView {
        let h = header(atOffset: offset)
        let keyStart = arena.unsafelyUnwrapped + offset + RecordTable.headerSize
        let key = UnsafeRawBufferPointer(start: keyStart, count: h.keyLen)
        return RecordView(key: key, value: UnsafeRawBufferPointer(start: keyStart + h.keyLen, count: h.valueLen),
                          stamp: h.stamp, isTombstone: h.tombstone, hash: hash ?? keyHash(key))
    }

    /// The key of the record at `offset`.
    @inline(__always)
    func key(atOffset offset: Int) -> UnsafeRawBufferPointer {
        let p = arena.unsafelyUnwrapped + offset
        return UnsafeRawBufferPointer(start: p + RecordTable.headerSize, count: Int(p.load(as: UInt32.self)))
    }

    /// The slot holding key (found) or the empty slot where it would go.
    @inline(__always)
    func probe(_ key: UnsafeRawBufferPointer, hash: UInt64) -> (Int, Bool) {
        let mask = slotCount - 1
        var i = Int(truncatingIfNeeded: hash) & mask
        while true {
            let s = slots[i]
            if s.isEmpty { return (i, false) }
            if s.matches(hash) && keyEquals(atOffset: s.offset, key) { return (i, true) }
            i = (i + 1) & mask
        }
    }

    @inline(__always)
    private func keyEquals(atOffset offset: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let p = arena.unsafelyUnwrapped + offset
        guard Int(p.load(as: UInt32.self)) == key.count else { return false }
        guard key.count > 0 else { return true }
        return memcmp(p + RecordTable.headerSize, key.baseAddress!, key.count) == 0
    }

    private func writeRecord(atOffset offset: Int, key: UnsafeRawBufferPointer?, value: UnsafeRawBufferPointer,
                             valueCount: Int, stamp: Stamp, tombstone: Bool) {
        let p = arena.unsafelyUnwrapped + offset
        var keyLen = Int(p.load(as: UInt32.self))
        if let key {
            keyLen = key.count
            p.storeBytes(of: UInt32(keyLen), as: UInt32.self)
            if keyLen > 0 { memcpy(p + RecordTable.headerSize, key.baseAddress!, keyLen) }
        }
        p.storeBytes(of: UInt32(valueCount), toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: stamp.fence, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: stamp.seq, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: stamp.rank, toByteOffset: 24, as: UInt32.self)
        p.storeBytes(of: (tombstone ? RecordTable.tombstoneFlag : 0) | RecordTable.changedFlag, toByteOffset: 28, as: UInt32.self)
        if valueCount > 0 { memcpy(p + RecordTable.headerSize + keyLen, value.baseAddress!, valueCount) }
    }

    func append(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, valueCount: Int,
                        stamp: Stamp, tombstone: Bool) throws -> Int {
        let size = RecordTable.recordSize(keyLen: key.count, valueLen: valueCount)
        guard receiving == nil else {
            throw KVFailure(.internal, "the store's table is receiving records from other ranks: nothing may be appended meanwhile")
        }
        guard size <= Slot.maxArenaBytes - arenaUsed else {
            throw KVFailure(.noMemory, "the store's arena cannot grow beyond \(Slot.maxArenaBytes) bytes")
        }
        try growArena(toHold: arenaUsed + size)
        if arenaUsed + size > arenaPopulated { populateArena(through: arenaUsed + size) }
        let offset = arenaUsed
        arenaUsed += size
        writeRecord(atOffset: offset, key: key, value: value, valueCount: valueCount, stamp: stamp, tombstone: tombstone)
        return offset
    }
}
