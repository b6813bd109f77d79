import Testing
@testable import FTKVCore

private func apply(_ s: SnapshotStore, _ key: String, _ value: String?, fence: UInt64, rank: UInt32 = 0, seq: UInt64 = 1) throws {
    let k = Array(key.utf8), v = Array((value ?? "").utf8)
    try k.withUnsafeBytes { kb in
        try v.withUnsafeBytes { vb in
            _ = try s.apply(kb, hash: StableHash.hash(kb), value: vb, stamp: Stamp(fence: fence, rank: rank, seq: seq),
                            tombstone: value == nil)
        }
    }
}

/// What a reader with `snapshot` sees: the value, "<deleted>", or nil (never existed then).
private func read(_ s: SnapshotStore, _ key: String, snapshot: UInt64) -> String? {
    let k = Array(key.utf8)
    return k.withUnsafeBytes { kb in
        guard let rec = s.find(kb, hash: StableHash.hash(kb), snapshot: snapshot) else { return nil }
        return rec.isTombstone ? "<deleted>" : String(decoding: rec.value, as: UTF8.self)
    }
}

@Suite("SnapshotStore")
struct SnapshotStoreTests {
    @Test("a reader sees the last interval before its snapshot while the next one is arriving")
    func readersLagOneInterval() throws {
        let s = SnapshotStore()
        try apply(s, "a", "a1", fence: 1)
        try apply(s, "b", "b1", fence: 1)
        // Interval 2 arrives early: overwrite a, delete b, create c.
        try apply(s, "a", "a2", fence: 2)
        try apply(s, "b", nil, fence: 2)
        try apply(s, "c", "c2", fence: 2)
        #expect(read(s, "a", snapshot: 2) == "a1")
        #expect(read(s, "b", snapshot: 2) == "b1")
        #expect(read(s, "c", snapshot: 2) == nil)
        #expect(read(s, "a", snapshot: 3) == "a2")
        #expect(read(s, "b", snapshot: 3) == "<deleted>")
        #expect(read(s, "c", snapshot: 3) == "c2")
        #expect(read(s, "a", snapshot: SnapshotStore.newest) == "a2")
        #expect(s.retainedVersions == 2)
    }

    @Test("writes within one interval replace each other without retaining versions")
    func sameIntervalOverwrites() throws {
        let s = SnapshotStore()
        try apply(s, "k", "x", fence: 4, rank: 0)
        try apply(s, "k", "y", fence: 4, rank: 1)
        try apply(s, "k", "old", fence: 4, rank: 0, seq: 9) // lower rank, same interval: loses
        #expect(read(s, "k", snapshot: 5) == "y")
        #expect(read(s, "k", snapshot: 4) == nil)
        #expect(s.retainedVersions == 0)
    }

    @Test("prune drops versions once the newer interval is complete, keeps those still needed")
    func prune() throws {
        let s = SnapshotStore()
        try apply(s, "a", "a1", fence: 1)
        try apply(s, "b", "b1", fence: 1)
        try apply(s, "a", "a2", fence: 2)
        try apply(s, "b", "b2", fence: 2)
        try apply(s, "b", "b3", fence: 3) // b2 retained for readers of snapshot 3
        #expect(s.retainedVersions == 2)
        try s.prune(completed: 2)
        #expect(s.retainedVersions == 1)
        #expect(read(s, "b", snapshot: 3) == "b2")
        #expect(read(s, "a", snapshot: 3) == "a2")
        try s.prune(completed: 3)
        #expect(s.retainedVersions == 0)
        #expect(read(s, "b", snapshot: 4) == "b3")
    }

    @Test("a late write of an older interval lands as the older version, never over the newer")
    func lateOlderWrite() throws {
        let s = SnapshotStore()
        try apply(s, "k", "new", fence: 3)
        try apply(s, "k", "older", fence: 2)
        #expect(read(s, "k", snapshot: SnapshotStore.newest) == "new")
        #expect(read(s, "k", snapshot: 3) == "older")
    }

    @Test("the primary's ordered stamps increase across writers and intervals")
    func orderedStamps() throws {
        let s = SnapshotStore()
        let k = Array("k".utf8)
        try k.withUnsafeBytes { kb in
            let h = StableHash.hash(kb)
            var last = Stamp.zero
            for (i, writer) in [UInt32(3), 0, 2, 0, 1].enumerated() {
                let interval = UInt64(1 + i / 2)
                let st = s.orderedStamp(kb, hash: h, interval: interval, writer: writer)
                #expect(st > last)
                let applied = try s.apply(kb, hash: h, value: UnsafeRawBufferPointer(start: nil, count: 0), stamp: st, tombstone: false)
                #expect(applied)
                last = st
            }
        }
    }
}
