import Testing
@testable import FTKVCore

private func encode(_ build: (inout ByteWriter) throws -> Void) throws -> [UInt8] {
    var w = try ByteWriter(reserving: 0)
    try build(&w)
    let buffer = try w.finish()
    return Array(buffer.bytes)
}

/// Runs body over the bytes and expects a KVFailure (a malformed message is an error, not a trap).
private func expectMalformed(_ what: String, _ data: [UInt8], sourceLocation: SourceLocation = #_sourceLocation,
                             _ body: (inout ByteReader) throws -> Void) {
    data.withUnsafeBytes { raw in
        var r = ByteReader(raw)
        do {
            try body(&r)
            Issue.record("\(what): decoded without error", sourceLocation: sourceLocation)
        } catch is KVFailure {
        } catch {
            Issue.record("\(what): threw \(error), expected KVFailure", sourceLocation: sourceLocation)
        }
    }
}

private func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

private let allKinds: [Wire.Kind] = [.get, .getReply, .apply, .applyAck, .order, .heartbeat, .failed, .propose, .newView, .excluded,
                                     .swap, .swapReply, .ready]
private let allStatuses: [Wire.Status] = [.ok, .notFound, .notSent, .staleEpoch, .failed, .lost]

@Suite("Wire and OpCodec")
struct WireTests {
    @Test("kinds and statuses are exactly the documented ones")
    func enumerations() {
        #expect((0...255).compactMap { Wire.Kind(rawValue: UInt8($0)) }.map(\.rawValue) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
        #expect((0...255).compactMap { Wire.Status(rawValue: UInt8($0)) }.map(\.rawValue) == [0, 1, 2, 3, 4, 5])
        #expect(Wire.headerSize == 32)
    }

    @Test("notices are exactly the kinds never answered")
    func notices() {
        for kind in allKinds {
            #expect(Wire.isNotice(kind) == [.heartbeat, .failed, .propose, .newView, .excluded, .ready].contains(kind))
            if Wire.isNotice(kind) { #expect(Wire.replyKind(to: kind) == nil) }
        }
        #expect(Wire.replyKind(to: .swap) == .swapReply)
    }

    @Test("compare-and-swap requests round trip; absent and empty values stay distinct; bad lengths are refused")
    func swapCodec() throws {
        let key: [UInt8] = [1, 2, 3], value: [UInt8] = [9, 8], empty: [UInt8] = []
        for expected in [nil, empty, value] as [[UInt8]?] {
            for desired in [nil, empty, value] as [[UInt8]?] {
                let data = try key.withUnsafeBytes { k in
                    try Engine.withOptionalBytes(expected) { e in
                        try Engine.withOptionalBytes(desired) { d in
                            let r = SwapCodec.Request(key: k, expected: e, desired: d)
                            let bytes = try encode { try SwapCodec.append(r, to: &$0) }
                            #expect(bytes.count == SwapCodec.encodedSize(r))
                            return bytes
                        }
                    }
                }
                try data.withUnsafeBytes { raw in
                    var r = ByteReader(raw)
                    let back = try SwapCodec.read(&r)
                    #expect(Array(back.key) == key)
                    #expect(back.expected.map { Array($0) } == expected)
                    #expect(back.desired.map { Array($0) } == desired)
                }
            }
        }
        expectMalformed("unknown flags", le(UInt32(4)) + le(UInt32(1)) + le(UInt32(0)) + le(UInt32(0)) + [7]) { _ = try SwapCodec.read(&$0) }
        expectMalformed("empty key", le(UInt32(0)) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(0))) { _ = try SwapCodec.read(&$0) }
        expectMalformed("absent value with a length", le(UInt32(2)) + le(UInt32(1)) + le(UInt32(1)) + le(UInt32(0)) + [7, 8]) {
            _ = try SwapCodec.read(&$0)
        }
        expectMalformed("lengths beyond the message", le(UInt32(3)) + le(UInt32(1)) + le(UInt32(1)) + le(UInt32(5)) + [7, 8, 9]) {
            _ = try SwapCodec.read(&$0)
        }
        expectMalformed("trailing bytes", le(UInt32(3)) + le(UInt32(1)) + le(UInt32(1)) + le(UInt32(1)) + [7, 8, 9, 10]) {
            _ = try SwapCodec.read(&$0)
        }
        expectMalformed("huge key", le(UInt32(0)) + le(UInt32(70_000)) + le(UInt32(0)) + le(UInt32(0))) { _ = try SwapCodec.read(&$0) }
        expectMalformed("truncated header", le(UInt32(3)) + le(UInt32(1))) { _ = try SwapCodec.read(&$0) }
    }

    @Test("header round trip for every kind and status, with the documented byte layout")
    func headerRoundTrip() throws {
        let samples: [(UInt32, Int32, UInt64, UInt64)] = [
            (0, 0, 0, 0), (7, 3, 12345, 99), (.max, -1, .max, .max), (1, .max, 1 << 63, 1 << 40), (2, .min, 1, 0),
        ]
        for kind in allKinds {
            for status in allStatuses {
                for (epoch, sender, id, arg) in samples {
                    let h = Wire.Header(kind: kind, status: status, epoch: epoch, sender: sender, requestID: id, argument: arg)
                    let data = try encode { try Wire.write(h, to: &$0) }
                    #expect(data.count == Wire.headerSize)
                    let expected: [UInt8] = Array("FTKV".utf8) + [kind.rawValue, status.rawValue, 0, 0]
                        + le(epoch) + le(sender) + le(id) + le(arg)
                    #expect(data == expected)
                    try data.withUnsafeBytes { raw in
                        var r = ByteReader(raw)
                        let back = try Wire.readHeader(&r)
                        #expect(back.kind == kind && back.status == status && back.epoch == epoch)
                        #expect(back.sender == sender && back.requestID == id && back.argument == arg)
                        #expect(r.remaining == 0 && r.offset == Wire.headerSize)
                    }
                }
            }
        }
    }

    @Test("malformed headers throw")
    func malformedHeaders() throws {
        let h = Wire.Header(kind: .apply, status: .ok, epoch: 4, sender: 2, requestID: 77, argument: 3)
        let good = try encode { try Wire.write(h, to: &$0) }
        for n in 0..<Wire.headerSize {
            expectMalformed("header truncated to \(n) bytes", Array(good.prefix(n))) { _ = try Wire.readHeader(&$0) }
        }
        for i in 0..<4 {
            var bad = good
            bad[i] ^= 0x20
            expectMalformed("magic byte \(i) changed", bad) { _ = try Wire.readHeader(&$0) }
        }
        for kind: UInt8 in [0, 14, 15, 128, 255] {
            var bad = good
            bad[4] = kind
            expectMalformed("kind \(kind)", bad) { _ = try Wire.readHeader(&$0) }
        }
        for status: UInt8 in [6, 7, 255] {
            var bad = good
            bad[5] = status
            expectMalformed("status \(status)", bad) { _ = try Wire.readHeader(&$0) }
        }
        // Trailing bytes are the body: not consumed by readHeader.
        try (good + [1, 2, 3]).withUnsafeBytes { raw in
            var r = ByteReader(raw)
            _ = try Wire.readHeader(&r)
            #expect(r.remaining == 3)
        }
    }

    @Test("one op's encoding has the documented layout")
    func opLayout() throws {
        let key: [UInt8] = [0x6b, 0x65, 0x79]
        let value: [UInt8] = [9, 8, 7, 6, 5]
        let stamp = Stamp(fence: 0x0102_0304_0506_0708, rank: 0x0a0b_0c0d, seq: 0x1112_1314_1516_1718)
        let data = try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { v in
                try encode { w in
                    try OpCodec.append(RecordView(key: k, value: v, stamp: stamp, isTombstone: false, hash: 0), to: &w)
                    try OpCodec.append(RecordView(key: k, value: UnsafeRawBufferPointer(start: nil, count: 0),
                                                  stamp: stamp, isTombstone: true, hash: 0), to: &w)
                }
            }
        }
        let first: [UInt8] = le(UInt32(3)) + le(UInt32(5)) + le(UInt32(0)) + le(stamp.rank) + le(stamp.fence)
            + le(stamp.seq) + key + value
        let second: [UInt8] = le(UInt32(3)) + le(UInt32(0)) + le(UInt32(1)) + le(stamp.rank) + le(stamp.fence)
            + le(stamp.seq) + key
        #expect(data == first + second)
        #expect(OpCodec.encodedSize(keyCount: 3, valueCount: 5) == first.count)
        #expect(OpCodec.encodedSize(keyCount: 3, valueCount: 0) == second.count)
    }

    /// A table of varied records (including a tombstone, an empty value and an empty key),
    /// encoded as one apply message.
    private func sampleBatch() throws -> (message: [UInt8], model: [[UInt8]: Got], opBytes: Int) {
        let table = RecordTable()
        var model: [[UInt8]: Got] = [:]
        var rng = SplitMix64(seed: 11)
        func put(_ k: [UInt8], _ v: [UInt8], tombstone: Bool = false) throws {
            let s = Stamp(fence: rng.next() >> 1, rank: UInt32.random(in: 0...UInt32.max, using: &rng), seq: rng.next())
            try table.put(k, v, stamp: s, tombstone: tombstone)
            model[k] = Got(value: tombstone ? [] : v, stamp: s, tombstone: tombstone)
        }
        for i in 0..<600 {
            let v = (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            try put(bytes("op-\(i)"), v)
        }
        try put(bytes("deleted"), bytes("ignored"), tombstone: true)
        try put(bytes("empty value"), [])
        try put(bytes("k"), bytes("one-byte key"))
        try put(bytes("big"), [UInt8](repeating: 0xab, count: 70_000))
        var opBytes = 0
        let message = try encode { w in
            try Wire.write(Wire.Header(kind: .apply, status: .ok, epoch: 3, sender: 1, requestID: 5,
                                       argument: UInt64(table.count)), to: &w)
            try table.forEach { rec in
                opBytes += OpCodec.encodedSize(keyCount: rec.key.count, valueCount: rec.value.count)
                try OpCodec.append(rec, to: &w)
            }
        }
        return (message, model, opBytes)
    }

    @Test("an apply batch of many ops decodes to the same keys, values, stamps and tombstones")
    func batchRoundTrip() throws {
        let (message, model, opBytes) = try sampleBatch()
        #expect(message.count == Wire.headerSize + opBytes)
        var decoded: [[UInt8]: Got] = [:]
        var ops = 0
        try message.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            let h = try Wire.readHeader(&r)
            #expect(h.kind == .apply && h.argument == UInt64(model.count))
            try OpCodec.forEach(in: &r, count: h.argument) { key, value, stamp, tombstone in
                ops += 1
                decoded[Array(key)] = Got(value: Array(value), stamp: stamp, tombstone: tombstone)
            }
            #expect(r.remaining == 0)
        }
        #expect(ops == model.count)
        #expect(decoded == model)
        #expect(decoded[bytes("deleted")]?.tombstone == true)
        #expect(decoded[bytes("empty value")] == model[bytes("empty value")])
        #expect(decoded[bytes("k")]?.value == bytes("one-byte key"))

        // Applying the decoded ops to a replica reproduces the table.
        let replica = RecordTable()
        try message.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            let h = try Wire.readHeader(&r)
            try OpCodec.forEach(in: &r, count: h.argument) { key, value, stamp, tombstone in
                try replica.upsert(key, hash: StableHash.hash(key), value: value, stamp: stamp,
                                   tombstone: tombstone, onlyIfNewer: true)
            }
        }
        var replicaModel: [[UInt8]: Got] = [:]
        replica.forEach { replicaModel[Array($0.key)] = Got(value: Array($0.value), stamp: $0.stamp, tombstone: $0.isTombstone) }
        #expect(replicaModel == model)
    }

    @Test("truncated or overcounted op batches throw")
    func malformedOps() throws {
        let (message, model, _) = try sampleBatch()
        let body = Array(message.dropFirst(Wire.headerSize))
        let count = UInt64(model.count)
        // Every truncation inside the last op and the op header before it, plus a spread of others.
        var cuts = Set(stride(from: 0, to: body.count, by: max(1, body.count / 500)))
        for n in max(0, body.count - 72_000)..<body.count where n % 97 == 0 || n > body.count - 100 { cuts.insert(n) }
        for n in cuts.sorted() {
            expectMalformed("body truncated to \(n) of \(body.count) bytes", Array(body.prefix(n))) { r in
                try OpCodec.forEach(in: &r, count: count) { _, _, _, _ in }
            }
        }
        expectMalformed("count one too high", body) { r in
            try OpCodec.forEach(in: &r, count: count + 1) { _, _, _, _ in }
        }
        expectMalformed("absurd count", body) { r in
            try OpCodec.forEach(in: &r, count: .max) { _, _, _, _ in }
        }
        // Length fields far beyond the message.
        var hugeKey = le(UInt32.max) + le(UInt32(0)) + le(UInt32(0)) + le(UInt32(0)) + le(UInt64(0)) + le(UInt64(0))
        hugeKey += [1, 2, 3]
        expectMalformed("key length 4 GiB", hugeKey) { r in try OpCodec.forEach(in: &r, count: 1) { _, _, _, _ in } }
        var hugeValue = le(UInt32(1)) + le(UInt32.max) + le(UInt32(0)) + le(UInt32(0)) + le(UInt64(0)) + le(UInt64(0))
        hugeValue += [1, 2, 3]
        expectMalformed("value length 4 GiB", hugeValue) { r in try OpCodec.forEach(in: &r, count: 1) { _, _, _, _ in } }
        // Zero ops from an empty body is fine.
        try [UInt8]().withUnsafeBytes { raw in
            var r = ByteReader(raw)
            var n = 0
            try OpCodec.forEach(in: &r, count: 0) { _, _, _, _ in n += 1 }
            #expect(n == 0)
        }
    }
}

@Suite("ByteWriter and ByteReader")
struct ByteBufferTests {
    enum Item: Equatable {
        case u8(UInt8), u16(UInt16), u32(UInt32), u64(UInt64), i32(Int32), i64(Int64), raw([UInt8])
    }

    @Test("many appends grow the buffer and read back in order")
    func manyAppends() throws {
        var rng = SplitMix64(seed: 12)
        var items: [Item] = []
        var expectedCount = 0
        var w = try ByteWriter(reserving: 0)
        for _ in 0..<60_000 {
            let item: Item
            switch Int.random(in: 0..<7, using: &rng) {
            case 0: item = .u8(.random(in: .min ... .max, using: &rng)); expectedCount += 1
            case 1: item = .u16(.random(in: .min ... .max, using: &rng)); expectedCount += 2
            case 2: item = .u32(.random(in: .min ... .max, using: &rng)); expectedCount += 4
            case 3: item = .u64(rng.next()); expectedCount += 8
            case 4: item = .i32(.random(in: .min ... .max, using: &rng)); expectedCount += 4
            case 5: item = .i64(.random(in: .min ... .max, using: &rng)); expectedCount += 8
            default:
                let b = (0..<Int.random(in: 0..<50, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                item = .raw(b)
                expectedCount += b.count
            }
            items.append(item)
            switch item {
            case .u8(let v): try w.append(v)
            case .u16(let v): try w.append(v)
            case .u32(let v): try w.append(v)
            case .u64(let v): try w.append(v)
            case .i32(let v): try w.append(v)
            case .i64(let v): try w.append(v)
            case .raw(let b): try b.withUnsafeBytes { try w.append($0) }
            }
        }
        // One big append on top.
        let big = [UInt8](repeating: 0x5a, count: 3 << 20)
        try big.withUnsafeBytes { try w.append($0) }
        expectedCount += big.count
        #expect(w.count == expectedCount)
        let buffer = try w.finish()
        #expect(buffer.count == expectedCount && buffer.bytes.count == expectedCount)
        #expect(w.count == 0 && w.base == nil, "finish leaves the writer empty")

        var r = ByteReader(buffer.bytes)
        var mismatches = 0
        for item in items {
            let back: Item
            switch item {
            case .u8: back = .u8(try r.read(UInt8.self))
            case .u16: back = .u16(try r.read(UInt16.self))
            case .u32: back = .u32(try r.read(UInt32.self))
            case .u64: back = .u64(try r.read(UInt64.self))
            case .i32: back = .i32(try r.read(Int32.self))
            case .i64: back = .i64(try r.read(Int64.self))
            case .raw(let b): back = .raw(Array(try r.read(count: b.count)))
            }
            if back != item { mismatches += 1 }
        }
        #expect(mismatches == 0)
        #expect(Array(try r.read(count: big.count)) == big)
        #expect(r.remaining == 0)
        #expect(throws: KVFailure.self) { _ = try r.read(UInt8.self) }

        // The writer is reusable after finish.
        try w.append(UInt16(0xbeef))
        let again = try w.finish()
        #expect(Array(again.bytes) == [0xef, 0xbe])
    }

    @Test("fields are little-endian")
    func littleEndian() throws {
        let data = try encode { w in
            try w.append(UInt32(0x0102_0304))
            try w.append(Int32(-2))
            try w.append(UInt64(0x1122_3344_5566_7788))
            try w.append(UInt16(0xa1b2))
        }
        #expect(data == [4, 3, 2, 1, 0xfe, 0xff, 0xff, 0xff, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xb2, 0xa1])
        let empty = try encode { w in try [UInt8]().withUnsafeBytes { try w.append($0) } }
        #expect(empty.isEmpty)
    }

    @Test("reader bounds checks: a failed read throws and consumes nothing")
    func readerBounds() throws {
        try [UInt8]().withUnsafeBytes { (raw) throws in
            var r = ByteReader(raw)
            #expect(throws: KVFailure.self) { _ = try r.read(UInt8.self) }
            #expect(throws: KVFailure.self) { _ = try r.read(count: 1) }
            #expect(throws: KVFailure.self) { _ = try r.read(count: -1) }
            #expect(try r.read(count: 0).count == 0)
            #expect(r.remaining == 0)
        }
        try [UInt8]([1, 2, 3, 4, 5]).withUnsafeBytes { (raw) throws in
            var r = ByteReader(raw)
            #expect(throws: KVFailure.self) { _ = try r.read(UInt64.self) }
            #expect(r.offset == 0 && r.remaining == 5)
            #expect(try r.read(UInt32.self) == 0x0403_0201)
            #expect(throws: KVFailure.self) { _ = try r.read(UInt16.self) }
            #expect(throws: KVFailure.self) { _ = try r.read(count: 2) }
            #expect(throws: KVFailure.self) { _ = try r.read(count: .max) }
            #expect(throws: KVFailure.self) { _ = try r.read(count: .min) }
            #expect(r.offset == 4 && r.remaining == 1)
            #expect(Array(try r.read(count: 1)) == [5])
            #expect(r.remaining == 0)
            #expect(try r.read(count: 0).count == 0)
        }
    }

    @Test("MessageBuffer sizes")
    func messageBuffer() throws {
        #expect(MessageBuffer(capacity: -1) == nil)
        let zero = try #require(MessageBuffer(capacity: 0))
        #expect(zero.count == 0 && zero.bytes.count == 0)
        let b = try #require(MessageBuffer(capacity: 100))
        #expect(b.count == 0)
        b.setCount(10)
        #expect(b.bytes.count == 10 && b.bytes.baseAddress == UnsafeRawPointer(b.base))
    }
}
