/// Applies a stream of replicated writes (`onlyIfNewer`) to a table with their cache misses
/// overlapped. On a table larger than the caches each write costs two dependent misses (the index
/// slot, then the record its key is compared with); applied one by one they are paid in
/// sequence, and they were most of a fence's apply time. Here a write waits in a short ring: its
/// slot is prefetched when it enters, its record half-way through, and it is applied on leaving,
/// by which time both have usually arrived.
///
/// The records' bytes must stay valid until `drain` returns. Order among the writes does not
/// matter: a replica keeps the newest stamp whatever the arrival order.
struct PrefetchingApplier {
    private static let depth = 16
    private static let half = depth / 2
    private let table: RecordTable
    private let ring: UnsafeMutablePointer<RecordView>
    private var head = 0
    private var count = 0
    /// Writes applied so far.
    private(set) var applied = 0

    /// Call `release` when done (the ring is not reference-counted).
    init(into table: RecordTable) {
        self.table = table
        ring = .allocate(capacity: PrefetchingApplier.depth)
    }

    func release() { ring.deallocate() }

    mutating func add(_ record: RecordView) throws {
        if count == PrefetchingApplier.depth { try applyOldest() }
        table.prefetchSlot(hash: record.hash)
        (ring + ((head + count) & (PrefetchingApplier.depth - 1))).initialize(to: record)
        count += 1
        if count > PrefetchingApplier.half {
            table.prefetchRecord(hash: ring[(head + count - 1 - PrefetchingApplier.half) & (PrefetchingApplier.depth - 1)].hash)
        }
    }

    /// Applies what is still waiting.
    mutating func drain() throws {
        while count > 0 { try applyOldest() }
    }

    private mutating func applyOldest() throws {
        let r = ring[head]
        head = (head + 1) & (PrefetchingApplier.depth - 1)
        count -= 1
        try table.upsert(r.key, hash: r.hash, value: r.value, stamp: r.stamp, tombstone: r.isTombstone, onlyIfNewer: true)
        applied += 1
    }
}
