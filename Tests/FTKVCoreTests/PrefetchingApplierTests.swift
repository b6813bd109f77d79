import Testing
@testable import FTKVCore

@Suite("PrefetchingApplier")
struct PrefetchingApplierTests {
    /// Every table's records, as a model.
    private func contents(_ t: RecordTable) -> [[UInt8]: Got] {
        var m: [[UInt8]: Got] = [:]
        t.forEach { m[Array($0.key)] = Got(value: Array($0.value), stamp: $0.stamp, tombstone: $0.isTombstone) }
        return m
    }

    @Test("writes through the ring land exactly as direct onlyIfNewer upserts, across growth and drains", arguments: [1, 7, 16, 17, 5_000])
    func sameAsDirect(writes: Int) throws {
        let pool = BytePool(count: 1 << 16, seed: UInt64(writes))
        var rng = SplitMix64(seed: 99)
        // Both tables start with some keys, so later writes overwrite (same size, other size),
        // lose to newer stamps, or delete.
        let direct = RecordTable(), ringed = RecordTable()
        for i in 0..<300 {
            for t in [direct, ringed] { try t.put(Array("k\(i)".utf8), pool.slice(i, 40), stamp: Stamp(fence: 2, rank: 1, seq: UInt64(i))) }
        }
        // The records the ring reads stay valid until drain: keep their bytes here.
        var keys: [[UInt8]] = [], values: [[UInt8]] = [], stamps: [Stamp] = [], tombs: [Bool] = []
        for _ in 0..<writes {
            keys.append(Array("k\(Int.random(in: 0..<600, using: &rng))".utf8))
            let tomb = Int.random(in: 0..<8, using: &rng) == 0
            tombs.append(tomb)
            values.append(tomb ? [] : pool.slice(Int.random(in: 0..<60_000, using: &rng), [40, 40, 7, 300][Int.random(in: 0..<4, using: &rng)]))
            stamps.append(Stamp(fence: UInt64.random(in: 1...3, using: &rng), rank: 0, seq: UInt64.random(in: 0..<1_000, using: &rng)))
        }
        var applier = PrefetchingApplier(into: ringed)
        defer { applier.release() }
        for i in 0..<writes {
            try keys[i].withUnsafeBytes { k in
                try values[i].withUnsafeBytes { v in
                    let h = StableHash.hash(k)
                    try direct.upsert(k, hash: h, value: v, stamp: stamps[i], tombstone: tombs[i], onlyIfNewer: true)
                }
            }
        }
        // The ring keeps pointers until drain: give it buffers that outlive the loop.
        let keyBuffers = keys.map { k -> UnsafeMutableRawBufferPointer in
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: k.count, alignment: 1); b.copyBytes(from: k); return b
        }
        let valueBuffers = values.map { v -> UnsafeMutableRawBufferPointer in
            let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(v.count, 1), alignment: 1)
            b.copyBytes(from: v); return UnsafeMutableRawBufferPointer(rebasing: b[0..<v.count])
        }
        defer { for b in keyBuffers + valueBuffers { b.deallocate() } }
        for i in 0..<writes {
            let k = UnsafeRawBufferPointer(keyBuffers[i])
            try applier.add(RecordView(key: k, value: UnsafeRawBufferPointer(valueBuffers[i]), stamp: stamps[i],
                                       isTombstone: tombs[i], hash: StableHash.hash(k)))
        }
        try applier.drain()
        #expect(applier.applied == writes)
        #expect(ringed.count == direct.count && ringed.liveCount == direct.liveCount && ringed.liveBytes == direct.liveBytes)
        #expect(contents(ringed) == contents(direct))
    }
}
