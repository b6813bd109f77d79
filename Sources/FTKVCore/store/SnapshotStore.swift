/// The records this rank holds as a replica, readable as of a fence snapshot.
///
/// Fence consistency promises a reader the state as of the last fence it completed. Writes of the
/// next interval can reach an owner before a slower reader has finished reading (a faster rank is
/// already inside the next fence), so when a write of a later interval replaces a record, the
/// replaced record moves to `previous`: a reader whose snapshot predates the new write reads it
/// there. Readers lag the newest write by at most one interval (a rank ships interval i+1 only
/// after every rank entered fence i), so one older version per key is enough, and it is dropped
/// once the owner completes the fence that makes the newer one visible everywhere (`prune`).
public final class SnapshotStore {
    /// Newest record of every key this rank holds.
    public let current = RecordTable()
    /// The record each newer-interval write replaced, while a reader may still need it.
    let previous = RecordTable(hugePages: false)

    public init() {}

    /// The snapshot that sees every write: sequential consistency, and a rank's own view of
    /// what it applied.
    public static let newest = UInt64.max

    /// Applies a write if its stamp is newer than what is held (replicas converge whatever the
    /// arrival order). Returns whether it changed the newest record.
    @discardableResult
    public func apply(_ key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer,
                      stamp: Stamp, tombstone: Bool) throws -> Bool {
        let previous = self.previous
        let applied = try current.upsert(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone,
                                         onlyIfNewer: true) { held in
            if stamp.fence > held.stamp.fence {
                try previous.upsert(held.key, hash: hash, value: held.value, stamp: held.stamp,
                                    tombstone: held.isTombstone, onlyIfNewer: false)
            }
        }
        // An older interval's write arriving after a newer one: it may still be the version a
        // lagging reader should see (rare: a second probe only then).
        if !applied, let held = current.find(key, hash: hash), stamp.fence < held.stamp.fence {
            try previous.upsert(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone, onlyIfNewer: true)
        }
        return applied
    }

    /// Room for `more` new keys (a batch about to be applied).
    public func reserve(additionalKeys more: Int) throws {
        try current.reserve(additionalKeys: more)
    }

    /// The stamp the key's primary gives a write under sequential consistency: newer than every
    /// write it ordered before, so a put that returned is never superseded by an earlier one.
    public func orderedStamp(_ key: UnsafeRawBufferPointer, hash: UInt64, interval: UInt64, writer: UInt32) -> Stamp {
        guard let held = current.find(key, hash: hash), held.stamp.fence >= interval else {
            return Stamp(fence: interval, rank: writer, seq: 1)
        }
        return Stamp(fence: held.stamp.fence, rank: held.stamp.rank, seq: held.stamp.seq &+ 1)
    }

    /// The record a reader whose snapshot is `snapshot` sees: the newest one written in an interval
    /// before `snapshot`. Nil when the key did not exist then. (A reader racing its own fence on
    /// another thread may get the state after that fence: documented as either.)
    @inline(__always)
    public func find(_ key: UnsafeRawBufferPointer, hash: UInt64, snapshot: UInt64) -> RecordView? {
        guard let rec = current.find(key, hash: hash) else { return nil }
        if rec.stamp.fence < snapshot { return rec }
        return previous.find(key, hash: hash)
    }

    /// Forgets older versions no reader can need once every rank has entered the fence that
    /// completes interval `completed` (their newer record is then visible to every reader).
    public func prune(completed: UInt64) throws {
        guard previous.count > 0 else { return }
        var keep: [(key: [UInt8], hash: UInt64)] = []
        previous.forEach { old in
            if let newer = current.find(old.key, hash: old.hash), newer.stamp.fence > completed {
                keep.append((Array(old.key), old.hash))
            }
        }
        if keep.isEmpty {
            previous.removeAll()
            return
        }
        // Rare (a faster rank already shipped the next interval): rebuild with what is kept.
        let kept = RecordTable(hugePages: false)
        for k in keep {
            try k.key.withUnsafeBytes { key in
                if let old = previous.find(key, hash: k.hash) {
                    try kept.upsert(key, hash: k.hash, value: old.value, stamp: old.stamp, tombstone: old.isTombstone, onlyIfNewer: false)
                }
            }
        }
        previous.removeAll()
        try kept.forEach { old in
            try previous.upsert(old.key, hash: old.hash, value: old.value, stamp: old.stamp, tombstone: old.isTombstone, onlyIfNewer: false)
        }
    }

    /// Older versions held (for tests and statistics).
    public var retainedVersions: Int { previous.count }
}
