/// Deferred writes: a writer's pending table takes each put's record at once and indexes it later,
/// with others, so the index slots' cache misses overlap (the storage is in RecordTable.swift).
extension RecordTable {
    /// A new record for key, as `upsert` without `onlyIfNewer` would write it, except that
    /// indexing it waits until `deferredLimit` such writes have gathered (or any other call): the
    /// record is appended now and its slot prefetched, so the slots' cache misses overlap instead
    /// of each write waiting for its own. For a writer's pending table, where most writes are of
    /// keys not yet in it: on a table larger than the caches that miss was most of a put
    /// (docs/benchmarks.md). Throws (nothing written) when memory is short.
    public func appendDeferred(_ key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer,
                               stamp: Stamp, tombstone: Bool) throws {
        if deferredCount == RecordTable.deferredLimit { indexDeferred() }
        // Room in the index for all of them now, so indexing them later cannot fail.
        if (tally.count + deferredCount + 1) * 2 > slotCount {
            indexDeferred()
            try growSlotsIfNeeded()
        }
        let offset = try append(key: key, value: value, valueCount: tombstone ? 0 : value.count,
                                stamp: stamp, tombstone: tombstone)
        prefetchSlot(hash: hash)
        deferred[deferredCount] = Deferred(offset: offset, hash: hash)
        deferredCount += 1
    }

    /// Indexes the deferred writes, oldest first; a write of a key already present replaces its
    /// record as `upsert` does. Cannot fail: `appendDeferred` made room in the index. The check
    /// is inlined (every find and get makes it; there is rarely anything to index).
    @inline(__always)
    func indexDeferred() {
        if deferredCount > 0 { indexDeferredWrites() }
    }

    @inline(never)
    private func indexDeferredWrites() {
        let count = deferredCount
        deferredCount = 0
        for i in 0..<count {
            let d = deferred[i]
            let h = header(atOffset: d.offset)
            let key = UnsafeRawBufferPointer(start: arena.unsafelyUnwrapped + d.offset + RecordTable.headerSize, count: h.keyLen)
            let (slot, found) = probe(key, hash: d.hash)
            if found {
                let oldOffset = slots[slot].offset
                let old = header(atOffset: oldOffset)
                retire(atOffset: oldOffset, old)
                slots[slot].setOffset(d.offset)
                countReplaced(old)
            } else {
                insert(inSlot: slot, hash: d.hash, offset: d.offset)
            }
            countWritten(keyLen: h.keyLen, valueLen: h.valueLen, tombstone: h.tombstone)
        }
        try? compactIfWorthIt() // an optimisation: garbage is kept when memory is short
    }
}
