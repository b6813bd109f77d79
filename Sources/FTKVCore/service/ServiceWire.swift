/// The message format between a client job and a store server (all little-endian, MPI_BYTE over
/// their intercommunicator). Every message starts with a 24-byte header:
///   0 magic u32 | 4 kind u8 | 5 reserved u8 | 6 reserved u16 | 8 request id u64 | 16 argument i64
/// Client rank c sends its requests to server rank c mod (server size), its gateway, one at a
/// time; the gateway runs each on its engine and answers with a `reply` carrying the request's
/// id, a KVCode in `argument`, and the value (get) or kv_errmsg text (failures) as body.
enum ServiceWire {
    static let magic: UInt32 = 0x434b_5446 // "FTKC"
    static let headerSize = 24
    /// Requests (and leave notices) from clients; replies to them.
    static let requestTag: Int32 = 7101
    static let replyTag: Int32 = 7102
    /// The connection handshake: hello (client rank 0 to server rank 0), welcome (the answer).
    static let helloTag: Int32 = 7103
    static let welcomeTag: Int32 = 7104
    /// Largest request a server accepts: the largest key and value, with headers.
    static let maxRequestBytes = headerSize + 16 + 2 * Engine.maxKeyLength + Engine.maxValueLength
    /// Largest hello: a secret of up to 1 KiB.
    static let maxHelloBytes = headerSize + 1024

    enum Kind: UInt8 {
        case hello = 1    // body: the secret; argument: the client job's size
        case stop = 2     // a hello asking the server to stop (`ftkv stop`); body: the secret
        case welcome = 3  // argument: a KVCode (ok: accepted); body: server size u32, replicas
                          // u32, then a message when refused
        case put = 4      // body: key length u32 | key | value
        case get = 5      // body: key; argument: the client's buffer capacity
        case del = 6      // body: key
        case swap = 7     // body: a SwapCodec request
        case reply = 8    // argument: a KVCode; body: get: true length u64 then the value if it
                          // fit; swap: swapped u8; failures: the message text
        case leave = 9    // client rank 0 to every server rank: the job leaves now
        case echo = 10    // body: any bytes, returned as the reply's body (a round trip through
                          // the serving loop without the store: `ftkv bench-client`'s baseline)
        case commit = 11  // a hello asking a durable server to commit (kv_commit); body: the
                          // secret. Its welcome comes once every server rank committed: its
                          // message is the version number in decimal
    }

    struct Header {
        var kind: Kind
        var requestID: UInt64
        var argument: Int64
    }

    static func start(_ kind: Kind, requestID: UInt64, argument: Int64, bodySize: Int) throws -> ByteWriter {
        var w = try ByteWriter(reserving: headerSize + bodySize)
        try w.append(magic)
        try w.append(kind.rawValue)
        try w.append(UInt8(0))
        try w.append(UInt16(0))
        try w.append(requestID)
        try w.append(argument)
        return w
    }

    /// A header-only message or one with `body` bytes.
    static func message(_ kind: Kind, requestID: UInt64 = 0, argument: Int64 = 0,
                        body: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) throws -> MessageBuffer {
        var w = try start(kind, requestID: requestID, argument: argument, bodySize: body.count)
        try w.append(body)
        return try w.finish()
    }

    static func readHeader(_ r: inout ByteReader) throws -> Header {
        guard try r.read(UInt32.self) == magic else { throw KVFailure(.remote, "malformed client/server message: bad magic") }
        guard let kind = Kind(rawValue: try r.read(UInt8.self)) else {
            throw KVFailure(.remote, "malformed client/server message: unknown kind")
        }
        _ = try r.read(UInt8.self)
        _ = try r.read(UInt16.self)
        return Header(kind: kind, requestID: try r.read(UInt64.self), argument: try r.read(Int64.self))
    }

    /// A put's body: key length u32 | key | value (checked: the bytes come from another job).
    static func readPut(_ r: inout ByteReader) throws -> (key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let keyLen = Int(try r.read(UInt32.self))
        guard keyLen >= 1, keyLen <= Engine.maxKeyLength, r.remaining - keyLen <= Engine.maxValueLength else {
            throw KVFailure(.remote, "malformed put: key length \(keyLen), \(r.remaining) bytes")
        }
        let key = try r.read(count: keyLen)
        return (key, try r.read(count: r.remaining))
    }

    /// A key-only body (get, del).
    static func readKey(_ r: inout ByteReader) throws -> UnsafeRawBufferPointer {
        guard r.remaining >= 1, r.remaining <= Engine.maxKeyLength else {
            throw KVFailure(.remote, "malformed request: key of \(r.remaining) bytes")
        }
        return try r.read(count: r.remaining)
    }

    static func text(_ bytes: UnsafeRawBufferPointer) -> String {
        String(decoding: bytes.prefix(4096), as: UTF8.self)
    }
}
