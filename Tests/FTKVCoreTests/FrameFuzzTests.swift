import CMPI
import Testing
@testable import FTKVCore
#if canImport(Glibc)
import Glibc
#endif

/// Frames from other ranks are untrusted. These feed the decoders (header, ops, get replies) and
/// the request server itself with random and mutated frames: none may trap, and malformed ones
/// must be refused (a `failed` reply, a thrown KVFailure(.remote)), never applied half-read.
/// No MPI call is made: `serve` only builds replies, the transport never sends here.
@Suite("Frame fuzzing", .serialized)
struct FrameFuzzTests {
    /// An engine whose transport is never used for MPI (MPI is not even initialised).
    private func offlineEngine() -> Engine {
        let transport = Transport(comm: cmpi_comm_null(), me: 0, members: [0, 1, 2], idLimit: 3, receiveTimeout: 1)
        return Engine(name: "fuzz", config: StoreConfig(), threadLevel: 0, transport: transport,
                      view: View.initial(nodeIdentities: [1, 2, 3]))
    }

    private func frame(_ kind: Wire.Kind, status: Wire.Status = .ok, argument: UInt64, body: (inout ByteWriter) throws -> Void) throws -> [UInt8] {
        var w = try ByteWriter(reserving: 64)
        try Wire.write(Wire.Header(kind: kind, status: status, epoch: 0, sender: 1, requestID: 42, argument: argument), to: &w)
        try body(&w)
        let m = try w.finish()
        return Array(m.bytes)
    }

    /// Well-formed frames of every kind: the seeds the mutations start from.
    private func seeds() throws -> [[UInt8]] {
        let key = Array("some/key".utf8), value = Array(repeating: UInt8(7), count: 40)
        func op(_ k: [UInt8], _ v: [UInt8], tomb: Bool, _ w: inout ByteWriter) throws {
            try k.withUnsafeBytes { kb in
                try v.withUnsafeBytes { vb in
                    try OpCodec.append(RecordView(key: kb, value: tomb ? UnsafeRawBufferPointer(start: nil, count: 0) : vb,
                                                  stamp: Stamp(fence: 1, rank: 1, seq: 3), isTombstone: tomb, hash: 0), to: &w)
                }
            }
        }
        return [
            try frame(.get, argument: 100) { w in try key.withUnsafeBytes { try w.append($0) } },
            try frame(.apply, argument: 3) { w in
                try op(key, value, tomb: false, &w); try op(Array("b".utf8), [], tomb: true, &w); try op(Array("c".utf8), value, tomb: false, &w)
            },
            try frame(.order, argument: 1) { w in try op(key, value, tomb: false, &w) },
            try frame(.getReply, argument: 0) { w in try w.append(UInt64(value.count)); try value.withUnsafeBytes { try w.append($0) } },
            try frame(.getReply, status: .notSent, argument: 0) { w in try w.append(UInt64(1 << 20)) },
            try frame(.getReply, status: .notFound, argument: 0) { _ in },
            try frame(.applyAck, argument: 3) { _ in },
        ]
    }

    private func mutate(_ seed: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var f = seed
        switch rng.next() % 6 {
        case 0: // flip a few random bytes
            for _ in 0..<(1 + Int(rng.next() % 4)) where !f.isEmpty { f[Int(rng.next() % UInt64(f.count))] = UInt8(truncatingIfNeeded: rng.next()) }
        case 1: // truncate
            f = Array(f.prefix(Int(rng.next() % UInt64(f.count + 1))))
        case 2: // extend with garbage
            f += (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 3: // a huge or odd value in a length/count field: header argument, or the first body fields
            let offsets = [24, 32, 36, 40].filter { $0 + 8 <= f.count }
            if let o = offsets.randomElement(using: &rng) {
                let v: UInt64 = [UInt64.max, 1 << 63, 1 << 32, 0xFFFF_FFFF, 65_537, 0, UInt64(rng.next() % 1000)].randomElement(using: &rng)!
                withUnsafeBytes(of: v.littleEndian) { for i in 0..<8 { f[o + i] = $0[i] } }
            }
        case 4: // header fine, body random
            f = Array(f.prefix(Wire.headerSize)) + (0..<Int(rng.next() % 80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        default: // entirely random bytes, sometimes with a valid magic
            f = (0..<Int(rng.next() % 100)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if f.count >= 4 && rng.next() % 2 == 0 { f.replaceSubrange(0..<4, with: seed[0..<4]) }
        }
        return f
    }

    @Test("a million random and mutated frames through the decoders and the request server: no trap")
    func fuzz() throws {
        let engine = offlineEngine()
        let seeds = try seeds()
        var rng = SplitMix64(seed: 0xF022)
        var headers = 0, served = 0, refused = 0, replies = 0, badReplies = 0
        for i in 0..<1_000_000 {
            let bytes = i < seeds.count ? seeds[i] : mutate(seeds[Int(rng.next() % UInt64(seeds.count))], &rng)
            guard let buffer = MessageBuffer(capacity: bytes.count) else { Issue.record("no memory"); return }
            bytes.withUnsafeBytes { if !$0.isEmpty { memcpy(buffer.base, $0.baseAddress!, $0.count) } }
            buffer.setCount(bytes.count)
            var reader = ByteReader(buffer.bytes)
            guard let header = try? Wire.readHeader(&reader) else { continue }
            headers += 1
            let message = Incoming(buffer: buffer, header: header, source: 1, tag: Wire.requestTag)
            if Wire.replyKind(to: header.kind) != nil {
                served += 1
                if let reply = engine.serve(message) {
                    var r = ByteReader(reply.bytes)
                    let h = try Wire.readHeader(&r)
                    #expect(h.requestID == header.requestID)
                    if h.status != .ok && h.status != .notFound && h.status != .notSent { refused += 1 }
                }
            } else if header.kind == .getReply {
                replies += 1
                if (try? GetReply.decode(message, from: 1)) == nil { badReplies += 1 }
            }
        }
        print("frame fuzz: \(headers) frames with a valid header, \(served) requests served (\(refused) refused), \(replies) get replies (\(badReplies) rejected)")
        #expect(served > 100_000 && refused > 10_000 && badReplies > 10_000)
        // The well-formed seeds were served normally: their writes are in the store.
        #expect(engine.store.liveCount >= 1)
    }

    @Test("reply lengths beyond the value limit or the bytes present are refused, not trusted")
    func hostileGetReplies() throws {
        for (length, present) in [(UInt64.max, 0), (UInt64(1) << 63, 0), (UInt64(Engine.maxValueLength) + 1, 0), (100, 99), (10, 11)] {
            let f = try frame(.getReply, argument: 0) { w in
                try w.append(length)
                for _ in 0..<present { try w.append(UInt8(1)) }
            }
            let buffer = MessageBuffer(capacity: f.count)!
            f.withUnsafeBytes { _ = memcpy(buffer.base, $0.baseAddress!, $0.count) }
            buffer.setCount(f.count)
            var r = ByteReader(buffer.bytes)
            let h = try Wire.readHeader(&r)
            #expect(throws: KVFailure.self) { _ = try GetReply.decode(Incoming(buffer: buffer, header: h, source: 1, tag: Wire.replyTag), from: 1) }
        }
    }

    @Test("an apply batch with a bad op is refused and counted; ops with impossible lengths are never applied")
    func hostileApply() throws {
        let engine = offlineEngine()
        // keyLen 0, valueLen > limit, tombstone with a value: each refused.
        let bad: [(UInt32, UInt32, UInt32)] = [(0, 1, 0), (1, UInt32(Engine.maxValueLength) + 1, 0), (70_000, 0, 0), (1, 4, 1), (1, 0, 7)]
        for (k, v, flags) in bad {
            let f = try frame(.apply, argument: 1) { w in
                try w.append(k); try w.append(v); try w.append(flags); try w.append(UInt32(1))
                try w.append(UInt64(1)); try w.append(UInt64(1))
                for _ in 0..<(min(Int(k), 8) + min(Int(v), 8)) { try w.append(UInt8(0)) }
            }
            let buffer = MessageBuffer(capacity: f.count)!
            f.withUnsafeBytes { _ = memcpy(buffer.base, $0.baseAddress!, $0.count) }
            buffer.setCount(f.count)
            var r = ByteReader(buffer.bytes)
            let h = try Wire.readHeader(&r)
            let reply = try #require(engine.serve(Incoming(buffer: buffer, header: h, source: 1, tag: Wire.requestTag)))
            var rr = ByteReader(reply.bytes)
            #expect(try Wire.readHeader(&rr).status == .failed)
        }
        #expect(engine.store.liveCount == 0)
        #expect(engine.transport.droppedMessages == UInt64(bad.count))
    }
}
