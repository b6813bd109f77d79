/// The message format between ranks of one store (all little-endian, over MPI_BYTE).
///
/// Every message starts with a 32-byte header:
///   0 magic u32 | 4 kind u8 | 5 status u8 | 6 reserved u16 | 8 epoch u32 | 12 sender i32 |
///   16 request id u64 | 24 argument u64
/// Requests travel on `Wire.requestTag`, replies on `Wire.replyTag` carrying the request's id.
enum Wire {
    static let magic: UInt32 = 0x564b_5446 // "FTKV"
    static let headerSize = 32
    static let requestTag: Int32 = 7001
    static let replyTag: Int32 = 7002
    /// The fence streams its apply batches in chunks of this size (see Engine.flush). A single op
    /// (key <= 64 KiB, value <= 1 GiB) makes a bigger batch of its own, within MPI's 32-bit count.
    static let fenceChunkBytes = 4 << 20

    enum Kind: UInt8 {
        case get = 1        // body: key; argument: the requester's buffer capacity
        case getReply = 2   // body: true length u64, then the value if it fits
        case apply = 3      // body: ops (see OpCodec); argument: op count
        case applyAck = 4   // argument: ops applied; replying to `order`, body: the assigned stamp
        case order = 5      // body: one op whose stamp the receiver, the key's primary, assigns
                            // (sequential consistency); the reply is an applyAck
        case heartbeat = 6  // a notice (no reply): the sender is alive (HeartbeatRing)
        case failed = 7     // a notice: the sender suspects rank `argument` has failed
        // The view change (Engine+ViewChange); bodies are lists of member ids (i32).
        case propose = 8    // a notice to the coordinator: body, the members the sender knows failed
        case newView = 9    // a notice from the coordinator: body, the members excluded from
                            // the next epoch (`argument`)
        case excluded = 10  // a notice to an excluded member: epoch `argument` goes on without it
        case swap = 11      // to the key's primary: compare-and-swap (see SwapCodec)
        case swapReply = 12 // argument: 1 swapped, 0 the key held another value
        case ready = 13     // a notice to every survivor: the sender knows the decision (body:
                            // the excluded ids) and will create the next view's communicators
    }

    /// Whether a kind is a notice: sent on the request tag, acted on, never answered.
    static func isNotice(_ kind: Kind) -> Bool {
        switch kind {
        case .heartbeat, .failed, .propose, .newView, .excluded, .ready: return true
        case .get, .getReply, .apply, .applyAck, .order, .swap, .swapReply: return false
        }
    }

    enum Status: UInt8 {
        case ok = 0
        case notFound = 1
        case notSent = 2     // value longer than the requester's capacity: length only
        case staleEpoch = 3  // sender's epoch differs from the receiver's view
        case failed = 4
        case lost = 5        // every replica that held the key failed (its value is lost)
    }

    /// The reply kind a request kind is answered with (nil: not a request).
    static func replyKind(to kind: Kind) -> Kind? {
        switch kind {
        case .get: return .getReply
        case .apply, .order: return .applyAck
        case .swap: return .swapReply
        case .getReply, .applyAck, .swapReply, .heartbeat, .failed, .propose, .newView, .excluded, .ready: return nil
        }
    }

    struct Header {
        var kind: Kind
        var status: Status
        var epoch: UInt32
        var sender: Int32
        var requestID: UInt64
        var argument: UInt64
    }

    static func write(_ h: Header, to w: inout ByteWriter) throws {
        try w.append(magic)
        try w.append(h.kind.rawValue)
        try w.append(h.status.rawValue)
        try w.append(UInt16(0))
        try w.append(h.epoch)
        try w.append(h.sender)
        try w.append(h.requestID)
        try w.append(h.argument)
    }

    /// Fields filled in after a message was framed (a batch's op count, a request's id).
    static func setRequestID(_ id: UInt64, in message: UnsafeMutableRawPointer) {
        message.storeBytes(of: id.littleEndian, toByteOffset: 16, as: UInt64.self)
    }

    static func setArgument(_ argument: UInt64, in message: UnsafeMutableRawPointer) {
        message.storeBytes(of: argument.littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    static func readHeader(_ r: inout ByteReader) throws -> Header {
        guard try r.read(UInt32.self) == magic else { throw KVFailure(.remote, "malformed message: bad magic") }
        guard let kind = Kind(rawValue: try r.read(UInt8.self)),
              let status = Status(rawValue: try r.read(UInt8.self)) else {
            throw KVFailure(.remote, "malformed message: unknown kind or status")
        }
        _ = try r.read(UInt16.self)
        return Header(kind: kind, status: status, epoch: try r.read(UInt32.self), sender: try r.read(Int32.self),
                      requestID: try r.read(UInt64.self), argument: try r.read(UInt64.self))
    }
}

/// A stamp in a message: fence u64 | rank u32 | seq u64.
enum StampCodec {
    static let size = 20

    static func append(_ stamp: Stamp, to w: inout ByteWriter) throws {
        try w.append(stamp.fence)
        try w.append(stamp.rank)
        try w.append(stamp.seq)
    }

    static func read(_ r: inout ByteReader) throws -> Stamp {
        let fence = try r.read(UInt64.self)
        let rank = try r.read(UInt32.self)
        return Stamp(fence: fence, rank: rank, seq: try r.read(UInt64.self))
    }
}

/// Encoding of one write (put or delete) inside an apply batch:
///   keyLen u32 | valueLen u32 | flags u32 (1 = tombstone) | stamp.rank u32 | stamp.fence u64 |
///   stamp.seq u64 | key | value
enum OpCodec {
    static let headerSize = 32

    static func encodedSize(keyCount: Int, valueCount: Int) -> Int { headerSize + keyCount + valueCount }

    static func append(_ rec: RecordView, to w: inout ByteWriter) throws {
        try w.reserve(encodedSize(keyCount: rec.key.count, valueCount: rec.value.count))
        try w.append(UInt32(rec.key.count))
        try w.append(UInt32(rec.value.count))
        try w.append(UInt32(rec.isTombstone ? 1 : 0))
        try w.append(rec.stamp.rank)
        try w.append(rec.stamp.fence)
        try w.append(rec.stamp.seq)
        try w.append(rec.key)
        try w.append(rec.value)
    }

    /// Decodes `count` ops and hands each to body (views into the message). Every length and flag
    /// is checked against the store's limits first: the bytes come from another process.
    static func forEach(in r: inout ByteReader, count: UInt64,
                        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, Stamp, Bool) throws -> Void) throws {
        guard count <= UInt64(r.remaining / headerSize) else {
            throw KVFailure(.remote, "malformed message: \(count) ops cannot fit in \(r.remaining) bytes")
        }
        var left = count
        while left > 0 {
            let keyLen = Int(try r.read(UInt32.self))
            let valueLen = Int(try r.read(UInt32.self))
            let flags = try r.read(UInt32.self)
            guard keyLen >= 1, keyLen <= Engine.maxKeyLength, valueLen <= Engine.maxValueLength, flags <= 1,
                  flags == 0 || valueLen == 0 else {
                throw KVFailure(.remote, "malformed message: op with key length \(keyLen), value length \(valueLen), flags \(flags)")
            }
            let rank = try r.read(UInt32.self)
            let fence = try r.read(UInt64.self)
            let seq = try r.read(UInt64.self)
            let key = try r.read(count: keyLen)
            let value = try r.read(count: valueLen)
            try body(key, value, Stamp(fence: fence, rank: rank, seq: seq), flags & 1 != 0)
            left -= 1
        }
    }
}

/// A compare-and-swap request:
///   flags u32 (1: an expected value is given, 2: a desired value is given) | keyLen u32 |
///   expectedLen u32 | desiredLen u32 | key | expected | desired
/// No expected value means "the key has no value"; no desired value means "delete it".
enum SwapCodec {
    static let headerSize = 16

    struct Request {
        var key: UnsafeRawBufferPointer
        var expected: UnsafeRawBufferPointer?
        var desired: UnsafeRawBufferPointer?
    }

    static func encodedSize(_ r: Request) -> Int {
        headerSize + r.key.count + (r.expected?.count ?? 0) + (r.desired?.count ?? 0)
    }

    static func append(_ r: Request, to w: inout ByteWriter) throws {
        try w.append(UInt32((r.expected == nil ? 0 : 1) | (r.desired == nil ? 0 : 2)))
        try w.append(UInt32(r.key.count))
        try w.append(UInt32(r.expected?.count ?? 0))
        try w.append(UInt32(r.desired?.count ?? 0))
        try w.append(r.key)
        if let e = r.expected { try w.append(e) }
        if let d = r.desired { try w.append(d) }
    }

    /// Decodes a request (views into the message), checking every length: the bytes come from
    /// another process.
    static func read(_ r: inout ByteReader) throws -> Request {
        let flags = try r.read(UInt32.self)
        let keyLen = Int(try r.read(UInt32.self))
        let expectedLen = Int(try r.read(UInt32.self))
        let desiredLen = Int(try r.read(UInt32.self))
        guard flags <= 3, keyLen >= 1, keyLen <= Engine.maxKeyLength, expectedLen <= Engine.maxValueLength,
              desiredLen <= Engine.maxValueLength, flags & 1 != 0 || expectedLen == 0, flags & 2 != 0 || desiredLen == 0,
              r.remaining == keyLen + expectedLen + desiredLen else {
            throw KVFailure(.remote, "malformed compare-and-swap request")
        }
        let key = try r.read(count: keyLen)
        let expected = try r.read(count: expectedLen)
        let desired = try r.read(count: desiredLen)
        return Request(key: key, expected: flags & 1 != 0 ? expected : nil, desired: flags & 2 != 0 ? desired : nil)
    }
}
