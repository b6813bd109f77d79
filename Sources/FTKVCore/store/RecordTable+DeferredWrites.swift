/// Deferred writes: a writer's pending table takes each put's record at once and indexes it only
/// when something reads the table (a get of the rank's own writes, the fence), all of them in one
/// pass (the storage is in RecordTable.swift).
extension RecordTable {
    /// A new record for key, as `upsert` without `onlyIfNewer` would write it, except that
    /// indexing it waits until the table is read: the record is appended now, and the index only
    /// grows to hold it. For a writer's pending table, where most writes are of keys not yet in
    /// it. Indexing each write as it came cost its slot's cache miss, and growing a filled index
    /// step by step read every record again at each doubling (about a quarter of a first
    /// interval's put, docs/benchmarks.md); an index that holds nothing yet grows for free.
    /// Throws (nothing written) when memory is short.
    public func appendDeferred(_ key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                               stamp: Stamp, tombstone: Bool) throws {
        // Room in the index for all of them now, so indexing them later cannot fail.
        try growIndex(toHold: tally.count + deferredCount + 1)
        let offset = try append(key: key, value: value, valueCount: tombstone ? 0 : value.count,
                                stamp: stamp, tombstone: tombstone)
        if deferredCount == 0 { deferredStart = offset }
        deferredCount += 1
    }

    /// Indexes the deferred writes, oldest first; a write of a key already present replaces its
    /// record as `upsert` does. Cannot fail: `appendDeferred` made room in the index. The check
    /// is inlined (every find and get makes it; there is rarely anything to index).
    @inline(__always)
    func indexDeferred() {
        if deferredCount > 0 { indexDeferredWrites() }
    }

    /// Each record is hashed `lag` records before its turn and its slot prefetched, so the
    /// slots' cache misses overlap instead of each write waiting for its own.
    @inline(never)
    private func indexDeferredWrites() {
        let count = deferredCount
        deferredCount = 0
        let lag = 16
        withUnsafeTemporaryAllocation(of: (offset: Int, hash: UInt64).self, capacity: lag) { ring in
            var next = deferredStart, hashed = 0
            func hashNext() {
                let key = key(atOffset: next)
                let hash = keyHash(key)
                prefetchSlot(hash: hash)
                ring[hashed % lag] = (next, hash)
                hashed += 1
                next += RecordTable.recordSize(keyLen: key.count, valueLen: header(atOffset: next).valueLen)
            }
            while hashed < min(lag, count) { hashNext() }
            for i in 0..<count {
                let d = ring[i % lag]
                if hashed < count { hashNext() } // takes the place of d, already read
                indexAppended(atOffset: d.offset, hash: d.hash, onlyIfNewer: false)
            }
        }
        try? compactIfWorthIt() // an optimisation: garbage is kept when memory is short
    }
}
