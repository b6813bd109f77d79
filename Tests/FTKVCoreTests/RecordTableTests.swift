import Testing
@testable import FTKVCore
#if canImport(Glibc)
import Glibc
#endif

/// Checks a table against a model of key -> latest record: counters, every find, and forEach.
private func verify(_ table: RecordTable, _ model: [[UInt8]: Got], hashOf: ([UInt8]) -> UInt64 = { StableHash.hash($0) },
                    sourceLocation: SourceLocation = #_sourceLocation) {
    let live = model.values.filter { !$0.tombstone }
    #expect(table.count == model.count, "count", sourceLocation: sourceLocation)
    #expect(table.liveCount == live.count, "liveCount", sourceLocation: sourceLocation)
    let expectedBytes = model.reduce(0) { $0 + ($1.value.tombstone ? 0 : $1.key.count + $1.value.value.count) }
    #expect(table.liveBytes == expectedBytes, "liveBytes", sourceLocation: sourceLocation)

    var wrong: [[UInt8]] = []
    for (k, expected) in model where table.get(k, hash: hashOf(k)) != expected {
        wrong.append(k)
    }
    #expect(wrong.isEmpty, "\(wrong.count) keys read back wrong, first: \(wrong.first.map { "\($0)" } ?? "")",
            sourceLocation: sourceLocation)

    var visits: [[UInt8]: Int] = [:]
    var wrongInForEach = 0
    table.forEach { rec in
        let k = Array(rec.key)
        visits[k, default: 0] += 1
        let got = Got(value: Array(rec.value), stamp: rec.stamp, tombstone: rec.isTombstone)
        if model[k] != got || rec.hash != hashOf(k) { wrongInForEach += 1 }
    }
    #expect(visits.count == model.count, "forEach distinct keys", sourceLocation: sourceLocation)
    #expect(visits.values.allSatisfy { $0 == 1 }, "forEach visits each key once", sourceLocation: sourceLocation)
    #expect(Set(visits.keys) == Set(model.keys), "forEach key set", sourceLocation: sourceLocation)
    #expect(wrongInForEach == 0, "forEach records disagree with the model", sourceLocation: sourceLocation)

    // The arena walk sees the same records, each once: replaced and dropped ones are skipped.
    let walk = table.writeOrderWalk(hashOf: hashOf)
    #expect(walk.visits == model.count, "forEachInWriteOrder visits each key once", sourceLocation: sourceLocation)
    #expect(walk.records == model, "forEachInWriteOrder records disagree with the model", sourceLocation: sourceLocation)
    #expect(walk.wrongHashes == 0, "forEachInWriteOrder hashes", sourceLocation: sourceLocation)
}

@Suite("RecordTable")
struct RecordTableTests {
    @Test("100k random keys (1..300 B) and values (0..5000 B), then same/different-size overwrites and deletes")
    func manyRandomKeys() throws {
        let pool = BytePool(count: (1 << 20) + 6000, seed: 1)
        var rng = SplitMix64(seed: 2)
        let table = RecordTable()
        struct Entry { var offset: Int; var length: Int; var stamp: Stamp; var tombstone: Bool }
        // Model keys carry their hash: hashing 100k arrays byte by byte through Hasher is slow in debug.
        struct Key: Hashable {
            let bytes: [UInt8]
            let hash: UInt64
            init(_ b: [UInt8]) { bytes = b; hash = StableHash.hash(b) }
            func hash(into h: inout Hasher) { h.combine(hash) }
            static func == (a: Key, b: Key) -> Bool {
                a.hash == b.hash && a.bytes.count == b.bytes.count
                    && a.bytes.withUnsafeBytes { x in b.bytes.withUnsafeBytes { y in x.count == 0 || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
            }
        }
        var model: [Key: Entry] = [:]
        model.reserveCapacity(100_000)

        func randomValue() -> (Int, Int) {
            (Int.random(in: 0..<(1 << 20), using: &rng), Int.random(in: 0...5000, using: &rng))
        }
        func write(_ key: Key, offset: Int, length: Int, stamp: Stamp, tombstone: Bool = false) throws {
            let applied = try key.bytes.withUnsafeBytes { k in
                try pool.bytes.withUnsafeBytes { p in
                    try table.upsert(k, hash: key.hash,
                                     value: UnsafeRawBufferPointer(rebasing: p[offset..<(offset + length)]),
                                     stamp: stamp, tombstone: tombstone, onlyIfNewer: false)
                }
            }
            #expect(applied)
            model[key] = Entry(offset: offset, length: tombstone ? 0 : length, stamp: stamp, tombstone: tombstone)
        }
        func check(_ phase: String) {
            #expect(table.count == model.count, "\(phase): count")
            #expect(table.liveCount == model.values.filter { !$0.tombstone }.count, "\(phase): liveCount")
            let bytes = model.reduce(0) { $0 + ($1.value.tombstone ? 0 : $1.key.bytes.count + $1.value.length) }
            #expect(table.liveBytes == bytes, "\(phase): liveBytes")
            var bad = 0
            for (k, e) in model {
                let ok: Bool = k.bytes.withUnsafeBytes { kb in
                    guard let rec = table.find(kb, hash: StableHash.hash(kb)) else { return false }
                    return rec.stamp == e.stamp && rec.isTombstone == e.tombstone
                        && pool.matches(rec.value, offset: e.offset, length: e.length)
                        && rec.key.count == kb.count && memcmp(rec.key.baseAddress!, kb.baseAddress!, kb.count) == 0
                }
                if !ok { bad += 1 }
            }
            #expect(bad == 0, "\(phase): \(bad) of \(model.count) keys read back wrong")
            var visited = 0
            table.forEach { _ in visited += 1 }
            #expect(visited == model.count, "\(phase): forEach count")
        }

        var seq: UInt64 = 0
        for _ in 0..<100_000 {
            let kOff = Int.random(in: 0..<(1 << 20), using: &rng)
            let kLen = Int.random(in: 1...300, using: &rng)
            let key = Key(pool.slice(kOff, kLen))
            let (vOff, vLen) = randomValue()
            seq += 1
            try write(key, offset: vOff, length: vLen, stamp: Stamp(fence: 1, rank: 0, seq: seq))
        }
        // Short keys repeat by chance (only 256 one-byte keys exist): those were overwrites.
        #expect(model.count > 90_000)
        check("after insert")

        // Overwrite: a third with the same size (in place), a third with another size (append),
        // a sixth deleted.
        let distinct = Array(model.keys)
        for (i, key) in distinct.enumerated() {
            seq += 1
            let stamp = Stamp(fence: 2, rank: 1, seq: seq)
            let old = model[key]!
            switch i % 6 {
            case 0, 1:
                let off = Int.random(in: 0..<(1 << 20), using: &rng)
                try write(key, offset: off, length: old.length, stamp: stamp)
            case 2, 3:
                var (off, len) = randomValue()
                if len == old.length { len = (len + 1) % 5001 }
                try write(key, offset: off, length: len, stamp: stamp)
            case 4:
                try write(key, offset: 0, length: 17, stamp: stamp, tombstone: true)
            default:
                break
            }
        }
        check("after overwrites and deletes")
    }

    @Test("records arriving for keys the table holds do not resize its index; more than it holds do, once")
    func reserveForArriving() throws {
        let table = RecordTable()
        for i in 0..<40_000 { try table.put(bytes("k\(i)"), [UInt8](repeating: 1, count: 16)) }
        let before = table.allocatedBytes, slots = table.slotCount
        try table.reserve(arriving: 40_000) // a checkpoint overwriting its keys
        #expect(table.allocatedBytes == before)
        for i in 0..<40_000 { try table.put(bytes("k\(i)"), [UInt8](repeating: 2, count: 16)) }
        #expect(table.allocatedBytes == before)
        try table.reserve(arriving: 200_000) // a table growing from small: sized at once
        let sized = table.slotCount
        #expect(sized > slots && sized >= 2 * 200_000)
        for i in 40_000..<200_000 { try table.put(bytes("k\(i)"), [UInt8](repeating: 3, count: 16)) }
        #expect(table.slotCount == sized, "the index did not grow again")
        #expect(table.count == 200_000 && table.get(bytes("k7"))?.value == [UInt8](repeating: 2, count: 16))
        // An absurd estimate is refused with a code, not an overflow trap, and changes nothing.
        #expect(throws: KVFailure.self) { try table.reserve(arriving: Int.max) }
        #expect(table.slotCount == sized && table.count == 200_000)
    }

    @Test("8-byte index entries: keys whose hashes agree in the entry's 24 hash bits, or in all the others, are told apart as the index grows and is rebuilt")
    func partialHashAgreement() throws {
        #expect(MemoryLayout<RecordTable.Slot>.stride == 8)
        // Key i (4 bytes): even keys share the top 24 bits of their hashes, odd keys the low 40.
        func hashOf(_ k: [UInt8]) -> UInt64 {
            let i = k.withUnsafeBytes { UInt64($0.loadUnaligned(as: UInt32.self)) }
            let mixed = i &* 0x9E37_79B9_7F4A_7C15
            return i % 2 == 0 ? (0xABC_DEF << 40) | (mixed >> 24) : (mixed & ~RecordTable.Slot.offsetMask) | 0x12345
        }
        let table = RecordTable(keyHash: { hashOf(Array($0)) })
        var model: [[UInt8]: Got] = [:]
        func key(_ i: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(i)) { Array($0) } }
        func put(_ i: Int, _ value: [UInt8], tombstone: Bool = false) throws {
            let s = Stamp(fence: 0, rank: 0, seq: UInt64(model.count))
            try table.put(key(i), value, stamp: s, tombstone: tombstone, hash: hashOf(key(i)))
            model[key(i)] = Got(value: tombstone ? [] : value, stamp: s, tombstone: tombstone)
        }
        for i in 0..<3_000 { try put(i, bytes("value \(i)")) } // odd keys probe one long run
        verify(table, model, hashOf: hashOf)
        for i in stride(from: 0, to: 3_000, by: 3) { try put(i, bytes("a longer value for key \(i)")) }
        for i in stride(from: 1, to: 3_000, by: 7) { try put(i, [], tombstone: true) }
        verify(table, model, hashOf: hashOf)
        #expect(table.get(key(3_001), hash: hashOf(key(3_001))) == nil)
        #expect(table.get(key(3_002), hash: hashOf(key(3_002))) == nil)
        // Rebuilt without the keys a view change moved away (the rebuild hashes each key again).
        let moved = try table.drop { $0 & 0xFFFF_FF00_0000_0000 == 0xABC_DEF << 40 }
        #expect(moved == 1_500)
        model = model.filter { hashOf($0.key) & 0xFFFF_FF00_0000_0000 != 0xABC_DEF << 40 }
        verify(table, model, hashOf: hashOf)
    }

    @Test("reads in write order take the record after the last one found, and still see overwrites, deletes and compaction")
    func readsInWriteOrder() throws {
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        var seq: UInt64 = 0
        func put(_ i: Int, size: Int, tombstone: Bool = false) throws {
            seq += 1
            let k = bytes("key-\(i)"), v = tombstone ? [] : [UInt8](repeating: UInt8(truncatingIfNeeded: i &+ size), count: size)
            let stamp = Stamp(fence: 0, rank: 0, seq: seq)
            try table.put(k, v, stamp: stamp, tombstone: tombstone)
            model[k] = Got(value: v, stamp: stamp, tombstone: tombstone)
        }
        /// Reads keys 0..<n in order; returns how many reads took the write-order shortcut.
        func readInOrder(_ n: Int) -> Int {
            var shortcuts = 0, wrong = 0
            for i in 0..<n {
                let k = bytes("key-\(i)")
                let before = table.readingInWriteOrder
                if table.get(k) != model[k] { wrong += 1 }
                if before && table.readingInWriteOrder { shortcuts += 1 }
            }
            #expect(wrong == 0, "\(wrong) keys read back wrong")
            return shortcuts
        }
        for i in 0..<3_000 { try put(i, size: 8 + i % 50) }
        #expect(readInOrder(3_000) >= 2_990, "a read in write order finds the next record")
        for i in stride(from: 0, to: 3_000, by: 3) { try put(i, size: 100) }           // moved: old records are garbage
        for i in stride(from: 1, to: 3_000, by: 5) { try put(i, size: 0, tombstone: true) }
        for i in stride(from: 2, to: 3_000, by: 7) { try put(i, size: 8 + i % 50) }  // same size: in place
        _ = readInOrder(3_000)
        // Enough moves that garbage dominates and the arena is compacted (records change places).
        let bytesBefore = table.arenaBytesInUse
        for round in 0..<4 { for i in 0..<3_000 { try put(i, size: 200 + round) } }
        #expect(table.arenaBytesInUse < bytesBefore * 4, "the arena was compacted")
        _ = readInOrder(3_000)
        #expect(table.get(bytes("key-3000")) == nil)
        verify(table, model)
    }

    @Test("after removeAll, a read does not take a record that only looks like one where the next record used to start")
    func noShortcutAcrossRemoveAll() throws {
        let table = RecordTable()
        for i in 0..<3 { try table.put(bytes("a\(i)"), [UInt8](repeating: 1, count: 40)) }
        _ = table.get(bytes("a0"))
        _ = table.get(bytes("a1")) // in write order: the next record would start after a1
        #expect(table.readingInWriteOrder)
        let staleOffset = table.recordAfterLast
        table.removeAll()
        // A value holding, at the old offset, the bytes of a record of key "k" (header, key, value).
        let key = bytes("k"), fakeValue = bytes("not k's value")
        let big = bytes("b")
        var value = [UInt8](repeating: 0, count: 400)
        let at = staleOffset - RecordTable.headerSize - big.count
        #expect(at >= 0)
        withUnsafeBytes(of: UInt32(key.count).littleEndian) { value.replaceSubrange(at..<(at + 4), with: $0) }
        withUnsafeBytes(of: UInt32(fakeValue.count).littleEndian) { value.replaceSubrange((at + 4)..<(at + 8), with: $0) }
        value.replaceSubrange((at + 32)..<(at + 32 + key.count), with: key)
        value.replaceSubrange((at + 32 + key.count)..<(at + 32 + key.count + fakeValue.count), with: fakeValue)
        try table.put(big, value)
        try table.put(key, bytes("k's value"))
        #expect(table.get(key)?.value == bytes("k's value"))
    }

    @Test("an overwrite of the same size is in place; another size moves the record")
    func inPlaceVersusAppend() throws {
        let table = RecordTable()
        for i in 0..<100 { try table.put(bytes("filler-\(i)"), [UInt8](repeating: UInt8(i), count: 50)) }
        let key = bytes("subject")
        try table.put(key, [1, 2, 3, 4], stamp: Stamp(fence: 0, rank: 0, seq: 1))
        let first = table.recordAddress(key)
        try table.put(key, [9, 8, 7, 6], stamp: Stamp(fence: 0, rank: 0, seq: 2))
        #expect(table.recordAddress(key) == first, "same-size overwrite should not move the record")
        #expect(table.get(key) == Got(value: [9, 8, 7, 6], stamp: Stamp(fence: 0, rank: 0, seq: 2), tombstone: false))
        try table.put(key, [5, 5, 5, 5, 5, 5, 5, 5, 5], stamp: Stamp(fence: 0, rank: 0, seq: 3))
        #expect(table.recordAddress(key) != first, "a longer value must be appended elsewhere")
        #expect(table.get(key) == Got(value: [5, 5, 5, 5, 5, 5, 5, 5, 5], stamp: Stamp(fence: 0, rank: 0, seq: 3), tombstone: false))
        try table.put(key, [], stamp: Stamp(fence: 0, rank: 0, seq: 4))
        #expect(table.get(key) == Got(value: [], stamp: Stamp(fence: 0, rank: 0, seq: 4), tombstone: false))
        #expect(table.count == 101 && table.liveCount == 101)
        #expect(table.liveBytes == (0..<100).reduce(0) { $0 + bytes("filler-\($1)").count + 50 } + key.count)
        for i in 0..<100 {
            #expect(table.get(bytes("filler-\(i)"))?.value == [UInt8](repeating: UInt8(i), count: 50))
        }
    }

    @Test("churn past 1 MiB with mostly garbage compacts, and every value survives")
    func churnAndCompaction() throws {
        let pool = BytePool(count: (1 << 16) + 2000, seed: 3)
        var rng = SplitMix64(seed: 4)
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        let keys = (0..<3000).map { bytes("churn/\($0)") }
        var seq: UInt64 = 0
        func put(_ k: [UInt8], length: Int, tombstone: Bool = false) throws {
            seq += 1
            let off = Int.random(in: 0..<(1 << 16), using: &rng)
            let v = pool.slice(off, length)
            let stamp = Stamp(fence: seq / 1000, rank: UInt32(seq % 7), seq: seq)
            try table.put(k, v, stamp: stamp, tombstone: tombstone)
            model[k] = Got(value: tombstone ? [] : v, stamp: stamp, tombstone: tombstone)
        }
        // Written once before the churn, never again: only compaction can move these records.
        for i in 0..<200 { try put(bytes("static/\(i)"), length: Int.random(in: 0...300, using: &rng)) }
        for k in keys { try put(k, length: Int.random(in: 200...800, using: &rng)) }
        verify(table, model)
        var appendedBytes = 0
        for round in 0..<30 {
            for (i, k) in keys.enumerated() {
                let old = model[k]!
                switch (i + round) % 10 {
                case 0: // same size: in place
                    try put(k, length: old.value.count)
                case 1 where round % 3 == 0:
                    try put(k, length: 0, tombstone: true)
                default: // another size: append, the old record becomes garbage
                    var len = Int.random(in: 200...800, using: &rng)
                    if len == old.value.count { len += 1 }
                    try put(k, length: len)
                    appendedBytes += RecordTable.recordSize(keyLen: k.count, valueLen: len)
                }
            }
            if round % 10 == 9 { verify(table, model) }
        }
        #expect(appendedBytes > 30 << 20, "the churn should append far more than the live data")
        verify(table, model)

        // Compaction is observable: every record lives in one arena, so without compaction the
        // static records (written first) and the churned ones (written last) would be the whole
        // appended history (> 30 MiB) apart.
        var lo = Int.max, hi = Int.min, recordBytes = 0
        table.forEach { rec in
            let a = Int(bitPattern: rec.key.baseAddress!)
            lo = min(lo, a)
            hi = max(hi, a)
            recordBytes += RecordTable.recordSize(keyLen: rec.key.count, valueLen: rec.value.count)
        }
        #expect(hi - lo < 3 * recordBytes,
                "records span \(hi - lo) bytes for \(recordBytes) live record bytes: garbage was not compacted")
    }

    @Test("tombstones: find reports them, counters exclude them")
    func tombstones() throws {
        let table = RecordTable()
        let k = bytes("k")
        try table.put(k, [1, 2, 3], stamp: Stamp(fence: 1, rank: 0, seq: 1))
        #expect(table.count == 1 && table.liveCount == 1 && table.liveBytes == 4)

        // The value passed with a tombstone is not stored.
        try table.put(k, [9, 9], stamp: Stamp(fence: 1, rank: 0, seq: 2), tombstone: true)
        #expect(table.get(k) == Got(value: [], stamp: Stamp(fence: 1, rank: 0, seq: 2), tombstone: true))
        #expect(table.count == 1 && table.liveCount == 0 && table.liveBytes == 0)

        // Deleting again (same size 0: the in-place path) does not drive counters negative.
        try table.put(k, [], stamp: Stamp(fence: 1, rank: 0, seq: 3), tombstone: true)
        #expect(table.count == 1 && table.liveCount == 0 && table.liveBytes == 0)

        // A tombstone for a key never written is still recorded (it must override older replicas).
        try table.put(bytes("never"), [7], stamp: Stamp(fence: 1, rank: 2, seq: 1), tombstone: true)
        #expect(table.get(bytes("never"))?.tombstone == true)
        #expect(table.count == 2 && table.liveCount == 0 && table.liveBytes == 0)

        // Revive.
        try table.put(k, [5], stamp: Stamp(fence: 2, rank: 0, seq: 1))
        #expect(table.get(k) == Got(value: [5], stamp: Stamp(fence: 2, rank: 0, seq: 1), tombstone: false))
        #expect(table.count == 2 && table.liveCount == 1 && table.liveBytes == 2)

        // An empty live value is not a tombstone.
        try table.put(bytes("empty"), [], stamp: Stamp(fence: 2, rank: 0, seq: 2))
        #expect(table.get(bytes("empty"))?.tombstone == false)
        #expect(table.count == 3 && table.liveCount == 2 && table.liveBytes == 2 + 5)

        #expect(table.get(bytes("absent")) == nil)
    }

    @Test("random puts and deletes match a Dictionary model exactly")
    func randomOpsAgainstModel() throws {
        var rng = SplitMix64(seed: 5)
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        for step in 0..<20_000 {
            let k = bytes("key\(Int.random(in: 0..<1500, using: &rng))")
            let stamp = Stamp(fence: UInt64(step / 100), rank: UInt32.random(in: 0..<4, using: &rng), seq: UInt64(step))
            if Int.random(in: 0..<5, using: &rng) == 0 {
                try table.put(k, [1, 2], stamp: stamp, tombstone: true)
                model[k] = Got(value: [], stamp: stamp, tombstone: true)
            } else {
                let n = Int.random(in: 0..<40, using: &rng)
                let v = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                try table.put(k, v, stamp: stamp)
                model[k] = Got(value: v, stamp: stamp, tombstone: false)
            }
        }
        verify(table, model)
    }

    /// Moves every record of `source` into `dest` as a re-replication does: spans copied in
    /// pieces of `piece` bytes (records straddle them) into the room `reserveReceiving` made.
    private func moveRecords(from source: RecordTable, to dest: RecordTable, piece: Int) throws -> Int {
        var spans: [(Int, Int)] = []
        source.forEachRecordSpan { offset, bytes, _ in spans.append((offset, bytes)) }
        let total = spans.reduce(0) { $0 + $1.1 }
        let space = try dest.reserveReceiving(bytes: total)
        var at = 0
        for (offset, bytes) in spans {
            var done = 0
            while done < bytes {
                let n = min(piece - at % piece, bytes - done)
                source.copyArenaBytes(from: offset + done, count: n, to: space + at)
                done += n
                at += n
            }
        }
        #expect(at == total)
        return try dest.adoptReceived(maxKeyLength: Engine.maxKeyLength, maxValueLength: Engine.maxValueLength)
    }

    @Test("records moved arena to arena (re-replication) end as upsert with onlyIfNewer would leave them, garbage skipped")
    func recordsMovedBetweenArenas() throws {
        var rng = SplitMix64(seed: 11)
        let source = RecordTable(), dest = RecordTable()
        var sourceModel: [[UInt8]: Got] = [:]
        // The source: values, tombstones and overwrites of other sizes (garbage in its arena).
        for step in 0..<6_000 {
            let k = bytes("key\(Int.random(in: 0..<2_000, using: &rng))")
            let stamp = Stamp(fence: 2, rank: UInt32.random(in: 0..<4, using: &rng), seq: UInt64(step))
            let tombstone = Int.random(in: 0..<6, using: &rng) == 0
            let v = tombstone ? [] : (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try source.put(k, v, stamp: stamp, tombstone: tombstone)
            sourceModel[k] = Got(value: v, stamp: stamp, tombstone: tombstone)
        }
        // The destination already holds some of the keys, older (fence 1) or newer (fence 3).
        var model: [[UInt8]: Got] = [:]
        for i in stride(from: 0, to: 3_000, by: 3) {
            let k = bytes("key\(i)")
            let stamp = Stamp(fence: i % 2 == 0 ? 1 : 3, rank: 0, seq: UInt64(i))
            let v = [UInt8](repeating: 7, count: i % 50)
            try dest.put(k, v, stamp: stamp)
            model[k] = Got(value: v, stamp: stamp, tombstone: false)
        }
        for (k, got) in sourceModel where model[k].map({ got.stamp > $0.stamp }) ?? true { model[k] = got }
        let before = dest.arenaBytesInUse
        #expect(try moveRecords(from: source, to: dest, piece: 1_000) == sourceModel.count)
        verify(dest, model)
        verify(source, sourceModel)
        // What lost to a newer copy is garbage, not a second record of its key.
        #expect(dest.arenaBytesInUse > before)
        // The table goes on taking writes, and compaction keeps every record.
        for i in 0..<4_000 { try dest.put(bytes("key\(i % 2_500)"), [UInt8](repeating: 1, count: 400), stamp: Stamp(fence: 9, rank: 0, seq: UInt64(i))) }
        for i in 0..<2_500 { model[bytes("key\(i)")] = Got(value: [UInt8](repeating: 1, count: 400), stamp: Stamp(fence: 9, rank: 0, seq: UInt64(i + (i < 1_500 ? 2_500 : 0))), tombstone: false) }
        verify(dest, model)
    }

    @Test("malformed received records are refused whole: nothing indexed, the room given back, appends refused until then")
    func malformedReceivedRecords() throws {
        let dest = RecordTable()
        var model: [[UInt8]: Got] = [:]
        for i in 0..<100 {
            let stamp = Stamp(fence: 1, rank: 0, seq: UInt64(i))
            try dest.put(bytes("k\(i)"), [UInt8(i)], stamp: stamp)
            model[bytes("k\(i)")] = Got(value: [UInt8(i)], stamp: stamp, tombstone: false)
        }
        let source = RecordTable()
        for i in 0..<50 { try source.put(bytes("new\(i)"), [1, 2, 3], stamp: Stamp(fence: 2, rank: 1, seq: UInt64(i))) }
        var spans: [(Int, Int)] = []
        source.forEachRecordSpan { offset, bytes, _ in spans.append((offset, bytes)) }
        let total = spans.reduce(0) { $0 + $1.1 }
        let used = dest.arenaBytesInUse
        // Each corruption of the last record: key length 0, a key longer than allowed, a value
        // running past the end, a tombstone with a value, an unknown flag; and bytes cut short.
        let corruptions: [(Int, UInt32)] = [(0, 0), (0, UInt32(Engine.maxKeyLength + 1)), (4, 1_000_000), (28, 1), (28, 64)]
        for (field, value) in corruptions + [(-1, 0)] {
            let room = field < 0 ? total - 8 : total
            let space = try dest.reserveReceiving(bytes: room)
            var at = 0
            for (offset, bytes) in spans where at < room {
                source.copyArenaBytes(from: offset, count: min(bytes, room - at), to: space + at)
                at += bytes
            }
            if field >= 0 { (space + total - spans.last!.1 + field).storeBytes(of: value, as: UInt32.self) }
            #expect(throws: KVFailure.self) { try dest.put(bytes("other"), [9], stamp: Stamp(fence: 5, rank: 0, seq: 0)) }
            #expect(throws: KVFailure.self, "corruption \(field)=\(value)") {
                try dest.adoptReceived(maxKeyLength: Engine.maxKeyLength, maxValueLength: Engine.maxValueLength)
            }
            try dest.abandonReceived()
            #expect(dest.arenaBytesInUse == used)
            verify(dest, model)
        }
        // Sound records after all that are taken, and appends work again.
        #expect(try moveRecords(from: source, to: dest, piece: 64) == 50)
        for i in 0..<50 { model[bytes("new\(i)")] = Got(value: [1, 2, 3], stamp: Stamp(fence: 2, rank: 1, seq: UInt64(i)), tombstone: false) }
        try dest.put(bytes("other"), [9], stamp: Stamp(fence: 5, rank: 0, seq: 0))
        model[bytes("other")] = Got(value: [9], stamp: Stamp(fence: 5, rank: 0, seq: 0), tombstone: false)
        verify(dest, model)
    }

    @Test("a receive MPI could not cancel: the records move to a fresh arena, and a late write into the old room changes nothing")
    func roomLeftToMPI() throws {
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        for i in 0..<20_000 { // about 5 MiB: a mapped arena
            let stamp = Stamp(fence: 1, rank: 0, seq: UInt64(i))
            let v = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 200 + i % 100)
            try table.put(bytes("k\(i % 15_000)"), v, stamp: stamp)
            model[bytes("k\(i % 15_000)")] = Got(value: v, stamp: stamp, tombstone: false)
        }
        let room = 1 << 20
        let space = try table.reserveReceiving(bytes: room)
        try table.abandonReceived(mpiMayStillWrite: true)
        memset(space, 0xAB, room) // MPI's late write: the old arena is still mapped, nobody's
        verify(table, model)
        for i in 0..<1_000 {
            let stamp = Stamp(fence: 2, rank: 0, seq: UInt64(i))
            try table.put(bytes("new\(i)"), [1, 2, 3, 4], stamp: stamp)
            model[bytes("new\(i)")] = Got(value: [1, 2, 3, 4], stamp: stamp, tombstone: false)
        }
        memset(space, 0xCD, room)
        verify(table, model)
    }

    @Test("keepResident makes room after the last record, faulted in, that a later receive uses without moving the arena")
    func residentRoomForReceiving() throws {
        let table = RecordTable()
        for i in 0..<20_000 { try table.put(bytes("k\(i)"), [UInt8](repeating: 1, count: 200), stamp: Stamp(fence: 1, rank: 0, seq: UInt64(i))) }
        let used = table.arenaBytesInUse
        table.keepResident(spare: 3 << 20)
        #expect(table.arenaCapacity >= used + (3 << 20))
        #expect(table.arenaPopulated >= used + (3 << 20))
        let arena = table.arena
        let space = try table.reserveReceiving(bytes: 3 << 20)
        #expect(table.arena == arena, "the room was already there: no growth, no move")
        #expect(space == arena! + used)
        try table.abandonReceived()
        // While receiving, keeping room is refused (the arena must not move under MPI).
        _ = try table.reserveReceiving(bytes: 0)
        let capacity = table.arenaCapacity
        table.keepResident(spare: 64 << 20)
        #expect(table.arenaCapacity == capacity)
        try table.abandonReceived()
    }

    @Test("deferred writes wait unindexed until the table is read, in room already made; then the last write of each key wins")
    func deferredUntilRead() throws {
        let table = RecordTable(hugePages: false)
        for i in 0..<30_000 {
            try table.putDeferred(bytes("key-\(i % 20_000)"), bytes("value \(i)"), stamp: Stamp(fence: 1, rank: 0, seq: UInt64(i)))
        }
        #expect(table.deferredCount == 30_000, "nothing indexed while only appends came")
        #expect(table.slotCount >= 2 * 30_001, "room made for every write")
        let slots = table.slotCount
        #expect(table.count == 20_000)
        #expect(table.deferredCount == 0 && table.slotCount == slots)
        var wrong = 0
        for i in 0..<20_000 where table.get(bytes("key-\(i)"))?.value != bytes("value \(i < 10_000 ? i + 20_000 : i)") { wrong += 1 }
        #expect(wrong == 0)
        #expect(table.writeOrderWalk().visits == 20_000, "the replaced records are garbage")
    }

    @Test("deferred writes (a pending table) match the model whatever call reads them, through growth, compaction and removeAll")
    func deferredWritesAgainstModel() throws {
        var rng = SplitMix64(seed: 11)
        let table = RecordTable(hugePages: false)
        var model: [[UInt8]: Got] = [:]
        var seq: UInt64 = 0
        var checks = 0
        for step in 0..<60_000 {
            seq += 1
            // Few keys early (a deferred batch often holds one key twice), many later (growth);
            // values up to 3000 B so overwrites pass the 1 MiB compaction threshold.
            let keys = step < 20_000 ? 40 : 20_000
            let k = bytes("key\(Int.random(in: 0..<keys, using: &rng))")
            let stamp = Stamp(fence: 0, rank: 1, seq: seq)
            if Int.random(in: 0..<6, using: &rng) == 0 {
                try table.putDeferred(k, [9], stamp: stamp, tombstone: true)
                model[k] = Got(value: [], stamp: stamp, tombstone: true)
            } else {
                let n = Int.random(in: 0..<3000, using: &rng)
                let v = (0..<n).map { i in UInt8(truncatingIfNeeded: seq &+ UInt64(i)) }
                try table.putDeferred(k, v, stamp: stamp)
                model[k] = Got(value: v, stamp: stamp, tombstone: false)
            }
            // Every kind of read, at random moments, sees every write before it.
            switch Int.random(in: 0..<400, using: &rng) {
            case 0:
                let probe = bytes("key\(Int.random(in: 0..<keys, using: &rng))")
                #expect(table.get(probe) == model[probe], "find after deferred writes, step \(step)")
            case 1:
                #expect(table.count == model.count, "count after deferred writes, step \(step)")
            case 2:
                #expect(table.writeOrderWalk().records == model, "write-order walk, step \(step)")
            case 3:
                // An ordinary upsert between deferred ones: ordered after them.
                seq += 1
                let s = Stamp(fence: 0, rank: 1, seq: seq)
                try table.put(k, [7, 7], stamp: s)
                model[k] = Got(value: [7, 7], stamp: s, tombstone: false)
            case 4 where step % 7 == 0:
                table.removeAll() // deferred writes not yet indexed go too
                model.removeAll()
            default:
                break
            }
            if step % 15_000 == 14_999 { verify(table, model); checks += 1 }
        }
        verify(table, model)
        #expect(checks == 4)
    }

    @Test("onlyIfNewer ignores older and equal stamps and applies newer ones")
    func onlyIfNewer() throws {
        let table = RecordTable()
        let k = bytes("key")
        let base = Stamp(fence: 5, rank: 3, seq: 10)
        #expect(try table.put(k, [1, 1, 1], stamp: base, onlyIfNewer: true), "a new key is always applied")
        let expected = Got(value: [1, 1, 1], stamp: base, tombstone: false)

        let notNewer = [base,
                        Stamp(fence: 5, rank: 3, seq: 9),
                        Stamp(fence: 5, rank: 2, seq: 999),
                        Stamp(fence: 4, rank: 99, seq: 999),
                        Stamp(fence: 0, rank: 0, seq: 0)]
        for s in notNewer {
            // Same size (in-place path), another size (append path), and a tombstone.
            #expect(try !table.put(k, [2, 2, 2], stamp: s, onlyIfNewer: true), "\(s)")
            #expect(try !table.put(k, [3, 3, 3, 3, 3], stamp: s, onlyIfNewer: true), "\(s)")
            #expect(try !table.put(k, [], stamp: s, tombstone: true, onlyIfNewer: true), "\(s)")
            #expect(table.get(k) == expected, "\(s)")
            #expect(table.count == 1 && table.liveCount == 1 && table.liveBytes == 6)
        }

        var current = base
        let newer = [Stamp(fence: 5, rank: 3, seq: 11),
                     Stamp(fence: 5, rank: 4, seq: 0),
                     Stamp(fence: 6, rank: 0, seq: 0)]
        for (i, s) in newer.enumerated() {
            #expect(s > current)
            let v = [UInt8](repeating: UInt8(10 + i), count: 2 + i)
            #expect(try table.put(k, v, stamp: s, onlyIfNewer: true), "\(s)")
            #expect(table.get(k) == Got(value: v, stamp: s, tombstone: false))
            #expect(table.liveBytes == 3 + v.count)
            current = s
        }

        // A newer tombstone wins; an older value then cannot resurrect the key.
        let del = Stamp(fence: 7, rank: 0, seq: 1)
        #expect(try table.put(k, [], stamp: del, tombstone: true, onlyIfNewer: true))
        #expect(try !table.put(k, [4], stamp: Stamp(fence: 6, rank: 9, seq: 9), onlyIfNewer: true))
        #expect(table.get(k) == Got(value: [], stamp: del, tombstone: true))
        #expect(table.count == 1 && table.liveCount == 0 && table.liveBytes == 0)
        #expect(try table.put(k, [4], stamp: Stamp(fence: 7, rank: 0, seq: 2), onlyIfNewer: true))
        #expect(table.liveCount == 1 && table.liveBytes == 4)

        // Without onlyIfNewer the write is unconditional, even with an older stamp.
        #expect(try table.put(k, [8, 8], stamp: .zero))
        #expect(table.get(k) == Got(value: [8, 8], stamp: .zero, tombstone: false))
    }

    @Test("replicas applying the same ops in any order converge with onlyIfNewer")
    func convergence() throws {
        var rng = SplitMix64(seed: 6)
        struct Op { var key: [UInt8]; var value: [UInt8]; var stamp: Stamp; var tombstone: Bool }
        var ops: [Op] = []
        var usedStamps = Set<Stamp>()
        while ops.count < 3000 {
            let s = Stamp(fence: UInt64.random(in: 0..<4, using: &rng), rank: UInt32.random(in: 0..<4, using: &rng),
                          seq: UInt64.random(in: 0..<200, using: &rng))
            guard usedStamps.insert(s).inserted else { continue }
            let tomb = Int.random(in: 0..<6, using: &rng) == 0
            let v = (0..<Int.random(in: 0..<12, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            ops.append(Op(key: bytes("k\(Int.random(in: 0..<200, using: &rng))"), value: v, stamp: s, tombstone: tomb))
        }
        var model: [[UInt8]: Got] = [:]
        for op in ops where model[op.key].map({ op.stamp > $0.stamp }) ?? true {
            model[op.key] = Got(value: op.tombstone ? [] : op.value, stamp: op.stamp, tombstone: op.tombstone)
        }
        for _ in 0..<3 {
            let table = RecordTable()
            for op in ops.shuffled(using: &rng) {
                try table.put(op.key, op.value, stamp: op.stamp, tombstone: op.tombstone, onlyIfNewer: true)
            }
            verify(table, model)
        }
    }

    @Test("removeAll empties a big table (freeing its arena and index) and it can be reused")
    func removeAllBigThenReuse() throws {
        let pool = BytePool(count: 1 << 16, seed: 7)
        let table = RecordTable()
        // > 16 MiB of arena and > 65536 slots: removeAll takes its freeing paths.
        let n = 70_000
        for i in 0..<n {
            try table.put(bytes("key-\(i)"), pool.slice(i % 60_000, 300), stamp: Stamp(fence: 0, rank: 0, seq: UInt64(i)))
        }
        #expect(table.count == n)
        table.removeAll()
        #expect(table.count == 0 && table.liveCount == 0 && table.liveBytes == 0)
        var visited = 0
        table.forEach { _ in visited += 1 }
        #expect(visited == 0)
        var found = 0
        for i in stride(from: 0, to: n, by: 7) where table.get(bytes("key-\(i)")) != nil { found += 1 }
        #expect(found == 0)

        var model: [[UInt8]: Got] = [:]
        for round in 0..<2 {
            for i in 0..<5000 {
                let k = bytes("key-\(i * 3)")
                let v = pool.slice(i, i % 97)
                let s = Stamp(fence: 1, rank: UInt32(round), seq: UInt64(i))
                try table.put(k, v, stamp: s)
                model[k] = Got(value: v, stamp: s, tombstone: false)
            }
            verify(table, model)
            table.removeAll()
            model = [:]
            verify(table, model)
        }
    }

    @Test("removeAll on a small table, then reuse")
    func removeAllSmallThenReuse() throws {
        let table = RecordTable()
        for i in 0..<100 { try table.put(bytes("a\(i)"), bytes("value \(i)")) }
        try table.put(bytes("dead"), [], tombstone: true)
        table.removeAll()
        verify(table, [:])
        #expect(table.get(bytes("a5")) == nil && table.get(bytes("dead")) == nil)
        var model: [[UInt8]: Got] = [:]
        for i in 50..<150 {
            let v = bytes("second \(i)")
            try table.put(bytes("a\(i)"), v, stamp: Stamp(fence: 1, rank: 0, seq: 0))
            model[bytes("a\(i)")] = Got(value: v, stamp: Stamp(fence: 1, rank: 0, seq: 0), tombstone: false)
        }
        verify(table, model)
    }

    @Test("zero-length values and the empty key")
    func zeroLength() throws {
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        func put(_ k: [UInt8], _ v: [UInt8], _ seq: UInt64) throws {
            let s = Stamp(fence: 0, rank: 0, seq: seq)
            try table.put(k, v, stamp: s)
            model[k] = Got(value: v, stamp: s, tombstone: false)
        }
        try put(bytes("z"), [], 1)
        try put([], bytes("value of the empty key"), 2)
        try put([0], [], 3)
        verify(table, model)
        try put(bytes("z"), [], 4)           // empty over empty, in place
        try put(bytes("z"), [1, 2, 3], 5)    // grows
        try put(bytes("z"), [], 6)           // shrinks back to empty
        try put([], [], 7)
        verify(table, model)
        #expect(table.liveBytes == 1 + 1)
    }

    @Test("keys differing only in their last byte, or only in length, stay distinct")
    func nearlyEqualKeys() throws {
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        var i: UInt64 = 0
        func put(_ k: [UInt8]) throws {
            i += 1
            let v = withUnsafeBytes(of: i.littleEndian) { Array($0) }
            try table.put(k, v, stamp: Stamp(fence: 0, rank: 0, seq: i))
            model[k] = Got(value: v, stamp: Stamp(fence: 0, rank: 0, seq: i), tombstone: false)
        }
        for length in [1, 7, 8, 9, 64, 300] {
            for last in 0...255 {
                var k = [UInt8](repeating: 0x61, count: length)
                k[length - 1] = UInt8(last)
                try put(k)
            }
        }
        for length in 0...40 { try put([UInt8](repeating: 0, count: length)) }
        verify(table, model)
    }

    @Test("keys given the same hash are still told apart by their bytes", arguments: [UInt64(0), 42, .max])
    func hashCollisions(hash: UInt64) throws {
        // The table hashes keys again when it grows: it must use the hash they were given.
        let normal = Array("normal-".utf8)
        let table = RecordTable(keyHash: { k in k.starts(with: normal) ? StableHash.hash(k) : hash })
        var model: [[UInt8]: Got] = [:]
        var keys: [[UInt8]] = []
        for i in 0..<400 { keys.append(bytes("collide-\(i)")) }
        for b in 0...255 { keys.append([0x78, 0x78, UInt8(b)]) }
        keys.append([])
        keys.append([0x78, 0x78])
        // Interleave with normally hashed keys so the colliding chain runs through other slots.
        for (i, k) in keys.enumerated() {
            let v = bytes("v\(i)")
            try table.put(k, v, stamp: Stamp(fence: 0, rank: 0, seq: UInt64(i)), hash: hash)
            model[k] = Got(value: v, stamp: Stamp(fence: 0, rank: 0, seq: UInt64(i)), tombstone: false)
            if i % 4 == 0 {
                try table.put(bytes("normal-\(i)"), v)
            }
        }
        // Overwrite every third (other size), delete every fifth, inside the chain.
        for (i, k) in keys.enumerated() where i % 3 == 0 || i % 5 == 0 {
            let s = Stamp(fence: 1, rank: 0, seq: UInt64(i))
            if i % 5 == 0 {
                try table.put(k, [], stamp: s, tombstone: true, hash: hash)
                model[k] = Got(value: [], stamp: s, tombstone: true)
            } else {
                let v = bytes("overwritten value \(i)")
                try table.put(k, v, stamp: s, hash: hash)
                model[k] = Got(value: v, stamp: s, tombstone: false)
            }
        }
        #expect(table.count == model.count + (keys.count + 3) / 4)
        var wrong = 0
        for (k, e) in model where table.get(k, hash: hash) != e { wrong += 1 }
        #expect(wrong == 0)
        for i in stride(from: 0, to: keys.count, by: 4) {
            #expect(table.get(bytes("normal-\(i)"))?.value == bytes("v\(i)"))
        }
        #expect(table.get(bytes("collide-400"), hash: hash) == nil)
        #expect(table.get([0x78], hash: hash) == nil)
        var collidingVisits = 0
        table.forEach { rec in if rec.hash == hash && model[Array(rec.key)] != nil { collidingVisits += 1 } }
        #expect(collidingVisits == model.count)
    }
}

@Suite("Stamp")
struct StampTests {
    @Test("ordering: fence, then rank, then seq")
    func ordering() {
        #expect(Stamp(fence: 1, rank: 0, seq: 0) > Stamp(fence: 0, rank: .max, seq: .max))
        #expect(Stamp(fence: 3, rank: 2, seq: 0) > Stamp(fence: 3, rank: 1, seq: .max))
        #expect(Stamp(fence: 3, rank: 2, seq: 8) > Stamp(fence: 3, rank: 2, seq: 7))
        #expect(!(Stamp(fence: 3, rank: 2, seq: 7) < Stamp(fence: 3, rank: 2, seq: 7)))
        #expect(Stamp(fence: 3, rank: 2, seq: 7) == Stamp(fence: 3, rank: 2, seq: 7))
        #expect(Stamp.zero == Stamp(fence: 0, rank: 0, seq: 0))
        #expect(Stamp.zero < Stamp(fence: 0, rank: 0, seq: 1))

        var rng = SplitMix64(seed: 8)
        let stamps = (0..<2000).map { _ in
            Stamp(fence: UInt64.random(in: 0..<3, using: &rng), rank: UInt32.random(in: 0..<3, using: &rng),
                  seq: UInt64.random(in: 0..<3, using: &rng))
        }
        for (a, b) in zip(stamps, stamps.dropFirst()) {
            let tupleLess = (a.fence, a.rank, a.seq) < (b.fence, b.rank, b.seq)
            #expect((a < b) == tupleLess, "\(a) < \(b)")
        }
    }
}
