import Glibc

/// Whole records moved between tables in their arena form (a view change's re-replication): the
/// sender copies each record's bytes as they lie in its arena, the receiver has MPI write them
/// straight into its own arena's free tail and then indexes them where they landed. One copy of
/// each byte on each side, against three before (table to batch, batch to receive buffer, receive
/// buffer to table), and no receive buffers (docs/recovery.md).
extension RecordTable {
    /// Each record that is not garbage, in arena (write) order: its offset, its size in the arena
    /// and its key's hash.
    func forEachRecordSpan(_ body: (_ offset: Int, _ bytes: Int, _ hash: UInt64) throws -> Void) rethrows {
        indexDeferred()
        var offset = 0
        while offset < arenaUsed {
            let h = header(atOffset: offset)
            let size = RecordTable.recordSize(keyLen: h.keyLen, valueLen: h.valueLen)
            if !h.garbage { try body(offset, size, keyHash(key(atOffset: offset))) }
            offset += size
        }
    }

    /// Copies `count` arena bytes from `offset` to `destination` (parts of the records
    /// `forEachRecordSpan` named; valid until the table next changes).
    func copyArenaBytes(from offset: Int, count: Int, to destination: UnsafeMutableRawPointer) {
        assert(offset >= 0 && count >= 0 && offset + count <= arenaUsed, "copy outside the arena's records") // debug builds only: no trap in the library
        memcpy(destination, arena.unsafelyUnwrapped + offset, count)
    }

    /// Makes room for `bytes` of whole records after the last one and returns where they go; the
    /// pages are faulted in now, in one call. Until `adoptReceived` or `abandonReceived`, nothing
    /// may be appended (appends throw): the space is being written by MPI. Throws when memory is
    /// short (nothing changed).
    func reserveReceiving(bytes: Int) throws -> UnsafeMutableRawPointer {
        indexDeferred()
        guard receiving == nil else { throw KVFailure(.internal, "the table is already receiving records") }
        guard bytes >= 0, bytes <= Slot.maxArenaBytes - arenaUsed else {
            throw KVFailure(.noMemory, "the store's arena cannot grow by \(bytes) bytes")
        }
        try growArena(toHold: arenaUsed + bytes)
        if bytes > 0, arenaUsed + bytes > arenaPopulated { populateArena(through: arenaUsed + bytes) }
        receiving = bytes
        return arena.unsafelyUnwrapped + arenaUsed
    }

    /// Checks the `reserveReceiving` space, filled with records, and indexes them as `upsert`
    /// with `onlyIfNewer` would: a record whose stamp is not newer than its key's present one
    /// becomes garbage at once. The bytes come from other processes: every length and flag is
    /// checked before any record is indexed; on a malformed one (or too little memory for the
    /// index) nothing is kept and this throws. Returns how many records were indexed.
    @discardableResult
    func adoptReceived(maxKeyLength: Int, maxValueLength: Int) throws -> Int {
        guard let bytes = receiving else { throw KVFailure(.internal, "the table is not receiving records") }
        receiving = nil
        let start = arenaUsed, end = arenaUsed + bytes
        let base = arena.unsafelyUnwrapped
        var records = 0
        var offset = start
        while offset < end {
            guard end - offset >= RecordTable.headerSize else {
                throw KVFailure(.remote, "malformed records received: \(end - offset) bytes left over")
            }
            let keyLen = Int(base.load(fromByteOffset: offset, as: UInt32.self))
            let valueLen = Int(base.load(fromByteOffset: offset + 4, as: UInt32.self))
            let flags = base.load(fromByteOffset: offset + 28, as: UInt32.self)
            let allFlags = RecordTable.tombstoneFlag | RecordTable.changedFlag | RecordTable.garbageFlag
            guard keyLen >= 1, keyLen <= maxKeyLength, valueLen <= maxValueLength, flags & ~allFlags == 0,
                  flags & RecordTable.tombstoneFlag == 0 || valueLen == 0 else {
                throw KVFailure(.remote, "malformed record received: key length \(keyLen), value length \(valueLen), flags \(flags)")
            }
            let size = RecordTable.recordSize(keyLen: keyLen, valueLen: valueLen)
            guard size <= end - offset else {
                throw KVFailure(.remote, "malformed records received: a record of \(size) bytes with \(end - offset) left")
            }
            offset += size
            records += 1
        }
        try growIndex(toHold: tally.count + records)
        // From here nothing fails: the records join the arena and the index.
        arenaUsed = end
        offset = start
        while offset < end {
            let p = base + offset + 28
            // A restored copy is new to this rank's files (kv_commit's delta) and not garbage.
            p.storeBytes(of: (p.load(as: UInt32.self) & RecordTable.tombstoneFlag) | RecordTable.changedFlag, as: UInt32.self)
            let key = key(atOffset: offset)
            let size = RecordTable.recordSize(keyLen: key.count, valueLen: Int(base.load(fromByteOffset: offset + 4, as: UInt32.self)))
            indexAppended(atOffset: offset, hash: keyHash(key), onlyIfNewer: true)
            offset += size
        }
        try? compactIfWorthIt() // an optimisation: garbage is kept when memory is short
        return records
    }

    /// Keeps `spare` bytes after the last record resident (grown and faulted in now, in one
    /// call), for records about to arrive. Best effort: nothing happens when memory is short.
    func keepResident(spare: Int) {
        guard receiving == nil, spare > 0, spare <= Slot.maxArenaBytes - arenaUsed,
              (try? growArena(toHold: arenaUsed + spare)) != nil else { return }
        if arenaUsed + spare > arenaPopulated { populateArena(through: arenaUsed + spare) }
    }

    /// Gives the `reserveReceiving` space back unindexed (the transfer did not complete).
    /// `mpiMayStillWrite`: a receive into it could not be cancelled (its sender died in the
    /// middle of the message, and Open MPI's single-copy read from it failed): the records then
    /// move to a fresh arena and the old one is left to MPI for good (LargeMemory.abandon), at
    /// the cost of a copy of the table on this rare path. Throws when memory for that is short
    /// (the table then takes no appends again).
    func abandonReceived(mpiMayStillWrite: Bool = false) throws {
        if mpiMayStillWrite {
            guard moveLiveRecordsToFreshArena(releasingOld: false) else {
                throw KVFailure(.noMemory, "no memory to move the table away from a receive MPI could not cancel")
            }
        }
        receiving = nil
    }
}
