import Testing
@testable import FTKVCore

/// kv_commit's deltas rest on the table knowing what changed since the last commit.
@Suite("RecordTable change tracking")
struct ChangeTrackingTests {
    func changedKeys(_ t: RecordTable) -> Set<[UInt8]> {
        var keys = Set<[UInt8]>()
        t.forEachChanged { keys.insert(Array($0.key)) }
        return keys
    }

    @Test func writesDeletesAndCompactionAreTrackedUntilMarked() throws {
        let t = RecordTable()
        for i in 0..<1000 { try t.put(Array("k\(i)".utf8), [UInt8](repeating: UInt8(i & 0xff), count: 100), stamp: Stamp(fence: 1, rank: 0, seq: UInt64(i))) }
        #expect(t.changedRecords == 1000 && changedKeys(t).count == 1000)
        t.markAllUnchanged()
        #expect(t.changedRecords == 0 && changedKeys(t).isEmpty)
        // Same-size overwrite (in place), different size (appended), delete, and a new key.
        try t.put(Array("k1".utf8), [UInt8](repeating: 7, count: 100), stamp: Stamp(fence: 2, rank: 0, seq: 1))
        try t.put(Array("k2".utf8), [UInt8](repeating: 7, count: 5000), stamp: Stamp(fence: 2, rank: 0, seq: 2))
        try t.put(Array("k3".utf8), [], stamp: Stamp(fence: 2, rank: 0, seq: 3), tombstone: true)
        try t.put(Array("new".utf8), [1], stamp: Stamp(fence: 2, rank: 0, seq: 4))
        try t.put(Array("k1".utf8), [UInt8](repeating: 8, count: 100), stamp: Stamp(fence: 2, rank: 0, seq: 5))
        #expect(changedKeys(t) == Set(["k1", "k2", "k3", "new"].map { Array($0.utf8) }))
        #expect(t.changedRecords == 4)
        // A refused older write changes nothing.
        #expect(try !t.put(Array("k9".utf8), [0], stamp: Stamp(fence: 0, rank: 0, seq: 0), onlyIfNewer: true))
        #expect(t.changedRecords == 4)
        // Garbage compaction keeps the marks (many different-size overwrites of one key).
        for n in 0..<3000 { try t.put(Array("k5".utf8), [UInt8](repeating: 1, count: 1000 + n % 2), stamp: Stamp(fence: 3, rank: 0, seq: UInt64(n))) }
        #expect(changedKeys(t) == Set(["k1", "k2", "k3", "new", "k5"].map { Array($0.utf8) }))
        // Reclaiming a changed tombstone forgets a change: a delta would be incomplete.
        #expect(!t.changesForgotten)
        for i in 10..<2000 { try t.put(Array("k\(i)".utf8), [], stamp: Stamp(fence: 4, rank: 0, seq: UInt64(i)), tombstone: true) }
        #expect(t.reclaimTombstones(through: 4) > 0)
        #expect(t.changesForgotten)
        t.markAllUnchanged()
        #expect(!t.changesForgotten && changedKeys(t).isEmpty)
    }
}
