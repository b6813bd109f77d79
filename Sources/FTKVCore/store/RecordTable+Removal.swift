import Glibc

/// Taking records out of a table: reclaimed tombstones, keys a view change moved away, everything
/// at once, and the compaction that gives their arena bytes back.
extension RecordTable {
    /// Drops the tombstones written in intervals up to `fence` once every replica has applied them
    /// (the caller knows: a completed fence), so a put+delete workload does not grow the table
    /// forever. The index is rebuilt without them; their arena bytes become garbage for the next
    /// compaction. Returns how many were dropped (0 also when memory for the rebuild is short:
    /// reclaiming is an optimisation, never a failure).
    @discardableResult
    public func reclaimTombstones(through fence: UInt64) -> Int {
        indexDeferred()
        guard tally.count > tally.liveCount else { return 0 }
        guard let removed = try? removeRecords(where: { offset, _ in
            let h = header(atOffset: offset)
            return h.tombstone && h.stamp.fence <= fence
        }) else { return 0 }
        if removed.changed > 0 { changesForgotten = true }
        return removed.count
    }

    /// Drops every record whose key hash `unwanted` accepts (a view change moved those keys to
    /// other members). Returns how many; throws only when memory for the new index is short
    /// (nothing is dropped then).
    @discardableResult
    public func drop(where unwanted: (UInt64) -> Bool) throws -> Int {
        indexDeferred()
        let removed = try removeRecords { _, hash in unwanted(hash) }
        guard removed.count > 0 else { return 0 }
        // Content changed, and the next commit must not describe it as a delta of the last one.
        changesForgotten = true
        tally.mutations &+= 1
        return removed.count
    }

    /// Rebuilds the index without the records `unwanted` accepts (their arena bytes become
    /// garbage) and keeps the counters true. Returns how many went, and how many of those were
    /// marked changed. Throws (nothing removed) when memory for the new index is short.
    private func removeRecords(where unwanted: (_ offset: Int, _ hash: UInt64) -> Bool) throws -> (count: Int, changed: Int) {
        var dropped = 0, live = 0, bytes = 0, changed = 0
        try rehash(to: slotCount) { offset, hash in
            guard unwanted(offset, hash) else { return true }
            let h = header(atOffset: offset)
            dropped += 1
            if !h.tombstone { live += 1; bytes += h.keyLen + h.valueLen }
            if h.changed { changed += 1 }
            retire(atOffset: offset, h)
            return false
        }
        tally.count -= dropped
        tally.liveCount -= live
        tally.liveBytes -= bytes
        tally.changedRecords -= changed
        try? compactIfWorthIt()
        return (dropped, changed)
    }

    /// Forgets every record. Keeps its allocations up to 256 MiB of arena and 2^21 slots
    /// (16 MiB), so a checkpoint loop that writes similar data every interval does not regrow the
    /// pending table after each fence; larger ones are released. `releasingMemory` gives back all
    /// but a minimal index (kv_close: a closed store may outlive the call, held by a thread's
    /// handle cache, so its records must not).
    public func removeAll(releasingMemory: Bool = false) {
        deferredCount = 0 // their records go with the arena's
        tally.mutations &+= 1
        tally.changedRecords = 0
        changesForgotten = false
        tally.count = 0
        tally.liveCount = 0
        tally.liveBytes = 0
        arenaUsed = 0
        garbageBytes = 0
        recordAfterLast = -1
        if arenaCapacity > (releasingMemory ? 0 : 256 << 20) {
            LargeMemory.release(arena, bytes: arenaCapacity)
            arena = nil
            arenaCapacity = 0
            arenaPopulated = 0
        }
        if slotCount > (releasingMemory ? RecordTable.initialSlots : 1 << 21), let small = RecordTable.allocateSlots(RecordTable.initialSlots, hugePages: hugePages) {
            RecordTable.releaseSlots(slots, slotCount)
            slots = small
            slotCount = RecordTable.initialSlots
        } else {
            memset(slots, 0, slotCount * MemoryLayout<Slot>.stride)
        }
    }

    /// Copies live records to a fresh arena once garbage is most of the arena.
    func compactIfWorthIt() throws {
        // Never while MPI writes into the arena's tail (an in-place overwrite can get here).
        guard receiving == nil, arenaUsed > 1 << 20, garbageBytes * 2 > arenaUsed else { return }
        // An optimisation: without memory for it the garbage is kept rather than a write failed.
        moveLiveRecordsToFreshArena(releasingOld: true)
    }

    /// Copies the indexed records to a fresh arena, leaving the garbage behind. The old arena is
    /// released, or (`releasingOld` false: MPI may still write into it, see abandonReceived)
    /// kept for good with its pages given back. Returns false, nothing changed, when memory is
    /// short.
    @discardableResult
    func moveLiveRecordsToFreshArena(releasingOld: Bool) -> Bool {
        let needed = arenaUsed - garbageBytes
        let newCapacity = max(needed + needed / 2, 64 << 10)
        guard let fresh = LargeMemory.allocate(newCapacity, zeroed: false, hugePages: hugePages) else { return false }
        var used = 0
        for i in 0..<slotCount where !slots[i].isEmpty {
            let offset = slots[i].offset
            let h = header(atOffset: offset)
            let size = RecordTable.recordSize(keyLen: h.keyLen, valueLen: h.valueLen)
            memcpy(fresh + used, arena.unsafelyUnwrapped + offset, size)
            slots[i].setOffset(used)
            used += size
        }
        if releasingOld {
            LargeMemory.release(arena, bytes: arenaCapacity)
        } else {
            LargeMemory.abandon(arena, bytes: arenaCapacity)
        }
        arena = fresh
        arenaCapacity = LargeMemory.roundedSize(newCapacity)
        arenaUsed = used
        arenaPopulated = used
        recordAfterLast = -1
        garbageBytes = 0
        return true
    }
}
