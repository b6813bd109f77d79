import CPlatform

/// Room in a table: the arena (grown by doubling, faulted in ahead of the writer) and the index
/// (kept at most half full, rebuilt into a larger slot array). The storage is in
/// RecordTable.swift.
extension RecordTable {
    /// Grows the arena (doubling) until it holds `bytes`.
    func growArena(toHold bytes: Int) throws {
        guard bytes > arenaCapacity else { return }
        var newCapacity = max(arenaCapacity * 2, 64 << 10)
        while newCapacity < bytes { newCapacity *= 2 }
        guard let grown = LargeMemory.reallocate(arena, oldBytes: arenaCapacity, used: arenaUsed, to: newCapacity, hugePages: hugePages) else {
            throw KVFailure(.noMemory, "cannot grow the store's arena to \(newCapacity) bytes")
        }
        if arena == nil { arenaPopulated = 0 }
        arena = grown
        arenaCapacity = LargeMemory.roundedSize(newCapacity)
    }

    /// Faults in the arena up to `end` and `populateStep` beyond: appends write it in order, and
    /// one system call per 2 MiB costs less than a fault per 4 KiB page (docs/benchmarks.md).
    /// Arenas too small to be mappings (malloc) are left alone.
    func populateArena(through end: Int) {
        guard LargeMemory.isMapped(arenaCapacity) else { return }
        let start = arenaPopulated & ~4095
        let stop = min(arenaCapacity, (max(end, start + RecordTable.populateStep) + 4095) & ~4095)
        if stop > start { LargeMemory.populate(arena.unsafelyUnwrapped + start, bytes: stop - start) }
        arenaPopulated = stop
    }

    /// Makes room for `more` new keys at once (one index resize instead of several while a batch
    /// of that many is applied).
    public func reserve(additionalKeys more: Int) throws {
        indexDeferred()
        guard more >= 0, more < (1 << 40) - tally.count else {
            throw KVFailure(.noMemory, "cannot index \(more) more keys")
        }
        try growIndex(toHold: tally.count + more + 1)
    }

    /// Grows the index (doubling) until `keys` keep it at most half full; the only growth rule,
    /// shared by `reserve` and the deferred writes.
    func growIndex(toHold keys: Int) throws {
        var n = slotCount
        while keys * 2 > n { n *= 2 }
        if n > slotCount { try rehash(to: n) }
    }

    /// Makes room for `n` arriving records that may overwrite keys already here: the index is
    /// sized once while the table holds fewer keys than arrive (a first checkpoint), and grows as
    /// puts make it otherwise. Reserving for every arriving record as a new key moved a full index
    /// into one twice its size in the second fence of a checkpoint loop that overwrites its keys.
    public func reserve(arriving n: Int) throws {
        let held = count
        if n > held { try reserve(additionalKeys: n - held) }
    }

    func growSlotsIfNeeded() throws {
        // Keep the load factor at or below 1/2 so linear probes stay short.
        guard (tally.count + 1) * 2 > slotCount else { return }
        try rehash(to: slotCount * 2)
    }

    /// Moves the index to a fresh slot array of `newCount` slots, keeping the entries `keep`
    /// accepts (given each record's offset and key hash; called only once the new array exists,
    /// so a refusal can count what it drops). Each key is hashed again from its record, read
    /// `ahead` entries early so the records' cache misses overlap.
    func rehash(to newCount: Int, keeping keep: (_ offset: Int, _ hash: UInt64) -> Bool = { _, _ in true }) throws {
        guard let newSlots = RecordTable.allocateSlots(newCount, hugePages: hugePages) else {
            throw KVFailure(.noMemory, "cannot allocate the store's index of \(newCount) slots")
        }
        let mask = newCount - 1, ahead = 16
        for i in 0..<slotCount {
            if i + ahead < slotCount, !slots[i + ahead].isEmpty {
                cplatform_prefetch(arena.unsafelyUnwrapped + slots[i + ahead].offset)
            }
            let slot = slots[i]
            guard !slot.isEmpty else { continue }
            let hash = keyHash(key(atOffset: slot.offset))
            assert(slot.matches(hash), "a key was given a hash other than keyHash's")
            guard keep(slot.offset, hash) else { continue }
            var j = Int(truncatingIfNeeded: hash) & mask
            while !newSlots[j].isEmpty { j = (j + 1) & mask }
            newSlots[j] = slot
        }
        RecordTable.releaseSlots(slots, slotCount)
        slots = newSlots
        slotCount = newCount
    }
}
