extension RecordTable {
    /// Applies a write at the key's primary under sequential consistency, stamped by
    /// `orderedStamp`; returns the stamp, which the other replicas then receive.
    @discardableResult
    public func applyInOrder(_ key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer, tombstone: Bool,
                             interval: UInt64, writer: UInt32) throws -> Stamp {
        let stamp = orderedStamp(key, hash: hash, interval: interval, writer: writer)
        try upsert(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone, onlyIfNewer: true)
        return stamp
    }

    /// The stamp the key's primary gives a write under sequential consistency: newer than every
    /// write to the key it ordered before, so a put that returned is never superseded by a write
    /// that completed before it began, and concurrent puts resolve the same way on every replica.
    public func orderedStamp(_ key: UnsafeRawBufferPointer, hash: UInt64, interval: UInt64, writer: UInt32) -> Stamp {
        guard let held = find(key, hash: hash), held.stamp.fence >= interval else {
            return Stamp(fence: interval, rank: writer, seq: 1)
        }
        return Stamp(fence: held.stamp.fence, rank: held.stamp.rank, seq: held.stamp.seq &+ 1)
    }
}
