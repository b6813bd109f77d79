import Testing
@testable import FTKVCore

@Suite("Tombstone reclamation")
struct TombstoneTests {
    @Test("tombstones up to a fence are dropped, later ones and live keys stay, memory is reused")
    func reclaim() throws {
        let t = RecordTable()
        let value = [UInt8](repeating: 9, count: 100)
        // 50,000 keys: every other one deleted in interval 1; some deleted in interval 2.
        for i in 0..<50_000 { try t.put(Array("k\(i)".utf8), value, stamp: Stamp(fence: 1, rank: 0, seq: UInt64(i))) }
        for i in stride(from: 0, to: 50_000, by: 2) {
            try t.put(Array("k\(i)".utf8), [], stamp: Stamp(fence: 1, rank: 0, seq: 100_000 + UInt64(i)), tombstone: true)
        }
        for i in stride(from: 1, to: 1_000, by: 2) {
            try t.put(Array("k\(i)".utf8), [], stamp: Stamp(fence: 2, rank: 0, seq: UInt64(i)), tombstone: true)
        }
        #expect(t.count == 50_000 && t.liveCount == 24_500)
        #expect(t.reclaimTombstones(through: 1) == 25_000)
        #expect(t.count == 25_000 && t.liveCount == 24_500)
        // The arena still holds the reclaimed tombstones (garbage until compaction): the arena
        // walk must skip them.
        let walk = t.writeOrderWalk()
        #expect(walk.visits == 25_000 && walk.records.count == 25_000 && walk.wrongHashes == 0)
        #expect(walk.records.values.filter { $0.tombstone }.count == 500)
        for i in 0..<50_000 {
            let got = t.get(Array("k\(i)".utf8))
            if i % 2 == 0 { #expect(got == nil) }
            else if i < 1_000 { #expect(got?.tombstone == true && got?.stamp.fence == 2) }
            else { #expect(got?.value == value) }
        }
        #expect(t.reclaimTombstones(through: 2) == 500)
        #expect(t.count == 24_500)
        // A put+delete workload stays bounded: the arena is compacted, not grown forever.
        for round in 0..<40 {
            for i in 0..<5_000 {
                let k = Array("soak\(round)/\(i)".utf8)
                try t.put(k, value, stamp: Stamp(fence: UInt64(3 + round), rank: 0, seq: UInt64(2 * i)))
                try t.put(k, [], stamp: Stamp(fence: UInt64(3 + round), rank: 0, seq: UInt64(2 * i + 1)), tombstone: true)
            }
            t.reclaimTombstones(through: UInt64(3 + round))
        }
        #expect(t.count == 24_500 && t.liveCount == 24_500)
        #expect(t.writeOrderWalk().visits == 24_500)
        // Records a view change drops (by hash) are skipped by the arena walk too.
        let dropped = try t.drop { $0 & 1 == 1 }
        #expect(dropped > 0 && t.count == 24_500 - dropped && t.writeOrderWalk().visits == t.count)
        #expect(t.arenaBytesInUse < 2 * 24_500 * RecordTable.recordSize(keyLen: 8, valueLen: 100) + (2 << 20))
    }
}
