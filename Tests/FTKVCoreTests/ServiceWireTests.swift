import Testing
@testable import FTKVCore

/// Client/server frames come from other jobs, which need not be ours: the decoders must refuse
/// every malformed one with a KVFailure, never trap; and the secret check must hold.
@Suite("Client/server frames")
struct ServiceWireTests {
    private func decode(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            guard let h = try? ServiceWire.readHeader(&r) else { return }
            switch h.kind {
            case .put: _ = try? ServiceWire.readPut(&r)
            case .get, .del: _ = try? ServiceWire.readKey(&r)
            case .swap: _ = try? SwapCodec.read(&r)
            default: break
            }
        }
    }

    @Test func wellFormedFramesRoundTrip() throws {
        let key = Array("k/1".utf8), value = Array(repeating: UInt8(9), count: 300)
        var w = try ServiceWire.start(.put, requestID: 77, argument: -3, bodySize: 4 + key.count + value.count)
        try w.append(UInt32(key.count))
        try key.withUnsafeBytes { try w.append($0) }
        try value.withUnsafeBytes { try w.append($0) }
        let m = try w.finish()
        var r = ByteReader(m.bytes)
        let h = try ServiceWire.readHeader(&r)
        #expect(h.kind == .put && h.requestID == 77 && h.argument == -3)
        let (k, v) = try ServiceWire.readPut(&r)
        #expect(Array(k) == key && Array(v) == value)
    }

    @Test func randomAndMutatedFramesNeverTrap() throws {
        var rng = SplitMix64(seed: 2026)
        let key = Array("some/key".utf8)
        var seedWriter = try ServiceWire.start(.put, requestID: 1, argument: 0, bodySize: 64)
        try seedWriter.append(UInt32(key.count))
        try key.withUnsafeBytes { try seedWriter.append($0) }
        let seed = Array(try seedWriter.finish().bytes)
        for i in 0..<200_000 {
            var f = seed
            if i % 2 == 0 {
                for _ in 0..<(1 + Int(rng.next() % 4)) { f[Int(rng.next() % UInt64(f.count))] = UInt8(truncatingIfNeeded: rng.next()) }
                if rng.next() % 3 == 0 { f = Array(f.prefix(Int(rng.next() % UInt64(f.count + 1)))) }
            } else {
                f = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                // Keep the magic on some, so the body decoders see garbage too.
                if f.count >= 24 && rng.next() % 2 == 0 {
                    f[0] = 0x46; f[1] = 0x54; f[2] = 0x4b; f[3] = 0x43
                    f[4] = UInt8(1 + rng.next() % 9)
                }
            }
            decode(f)
        }
    }

    @Test func lyingLengthsAreRefused() throws {
        var w = try ServiceWire.start(.put, requestID: 1, argument: 0, bodySize: 8)
        try w.append(UInt32(0x7fff_ffff))
        let m = try w.finish()
        var r = ByteReader(m.bytes)
        _ = try ServiceWire.readHeader(&r)
        #expect(throws: KVFailure.self) { try ServiceWire.readPut(&r) }
    }

    @Test func secretsCompareExactly() {
        func check(_ presented: String, _ secret: String) -> Bool {
            Array(presented.utf8).withUnsafeBytes { StoreServer.sameSecret($0, secret) }
        }
        #expect(check("abc123", "abc123"))
        #expect(!check("abc124", "abc123"))
        #expect(!check("abc12", "abc123"))
        #expect(!check("abc1234", "abc123"))
        #expect(!check("", "abc123"))
        #expect(!check("", ""))
    }
}
