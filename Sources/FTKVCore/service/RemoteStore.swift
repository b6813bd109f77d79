import Glibc

/// A client job's connection to a store server (kv_connect): the same calls as an embedded
/// store, carried out by the server's engine. Client rank c sends its requests to server rank
/// c mod (server size), its gateway, one at a time (to the next one if it dies); the server's
/// store runs with sequential consistency, so a put is on every replica when it returns, and
/// `fence` (a barrier of the client job) makes every client rank's earlier writes visible to all. Every wait has a deadline
/// (ftkv_timeout).
public final class RemoteStore: KeyValueStore {
    private let lock = FTKVLock()
    /// A private duplicate of the client job's communicator.
    private let local: MPIComm
    private let link: JobLink
    private let rank: Int32
    private let size: Int32
    /// Server ranks this rank gave up on (no answer within the patience: see `call`).
    private var deadGateways = Set<Int32>()
    private let serverReplicas: Int32
    private let timeout: Double
    private var nextID: UInt64 = 1
    private var closed = false
    /// Where the job connected and the secret it was given, for rank 0's commit connection.
    private let address: String
    private let configuredSecret: String?

    /// Made by connect (RemoteStore+Connect.swift).
    init(local: MPIComm, link: JobLink, rank: Int32, size: Int32, replicas: Int32, timeout: Double,
         address: String, secret: String?) {
        self.local = local
        self.link = link
        self.rank = rank
        self.size = size
        self.serverReplicas = replicas
        self.timeout = timeout
        self.address = address
        self.configuredSecret = secret
    }

    // MARK: KeyValueStore

    public func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws {
        try Engine.checkKey(key)
        try Engine.checkValue(value)
        try call(.put, bodySize: 4 + key.count + value.count) { w in
            try w.append(UInt32(key.count))
            try w.append(key)
            try w.append(value)
        }
    }

    public func get(key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome {
        try Engine.checkKey(key)
        let capacity = min(buffer?.count ?? 0, Engine.maxValueLength)
        let reply = try call(.get, argument: Int64(capacity), bodySize: key.count, replyCapacity: capacity) { w in
            try w.append(key)
        }
        if reply.code == .notFound { return .notFound }
        return try withExtendedLifetime(reply) {
            var r = reply.body
            let length = Int(try r.read(UInt64.self))
            guard length >= 0, length <= Engine.maxValueLength else { throw KVFailure(.remote, "the server reported a value of \(length) bytes") }
            guard let buffer else { return .found(length: length) }
            guard length <= buffer.count else { return .tooSmall(length: length) }
            guard r.remaining == length else { throw KVFailure(.remote, "the server sent \(r.remaining) bytes of a \(length)-byte value") }
            if length > 0 { memcpy(buffer.baseAddress!, try r.read(count: length).baseAddress!, length) }
            return .found(length: length)
        }
    }

    public func del(key: UnsafeRawBufferPointer) throws {
        try Engine.checkKey(key)
        try call(.del, bodySize: key.count) { w in try w.append(key) }
    }

    public func compareAndSwap(key: UnsafeRawBufferPointer, expected: UnsafeRawBufferPointer?,
                               desired: UnsafeRawBufferPointer?) throws -> Bool {
        try Engine.checkKey(key)
        if let expected { try Engine.checkValue(expected) }
        if let desired { try Engine.checkValue(desired) }
        let request = SwapCodec.Request(key: key, expected: expected, desired: desired)
        let reply = try call(.swap, bodySize: SwapCodec.encodedSize(request)) { w in try SwapCodec.append(request, to: &w) }
        return try withExtendedLifetime(reply) {
            var r = reply.body
            return try r.read(UInt8.self) == 1
        }
    }

    /// A barrier of the client job: every client rank's writes before it were acknowledged by
    /// the server's replicas, so every client rank reads them after it.
    public func fence() throws {
        try lock.withLock {
            try checkOpen()
            var r = try Collectives.startBarrier(local)
            try Collectives.complete(&r, seconds: timeout, what: "kv_fence of the client job")
        }
    }

    /// Sends `bytes` through this rank's gateway and back without touching the store: the
    /// round trip every request pays (a benchmark baseline). Returns the bytes that came back.
    public func echo(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let reply = try call(.echo, bodySize: bytes.count, replyCapacity: bytes.count) { w in try w.append(bytes) }
        return withExtendedLifetime(reply) { reply.body.remaining }
    }

    /// Collective over the client job. Once every rank is here (so every write of this job was
    /// acknowledged, hence on all its replicas), rank 0 asks the server for a commit on a
    /// connection of its own (as `ftkv stop` does); the server answers once every server rank
    /// committed. Writes other client jobs make meanwhile may or may not be in the version.
    /// KV_EMISUSE from a server without --dir.
    public func commit() throws -> UInt64 {
        try lock.withLock {
            try checkOpen()
            var r = try Collectives.startBarrier(local)
            try Collectives.complete(&r, seconds: timeout, what: "kv_commit of the client job")
            return try RemoteStore.commitThroughRankZero(local: local, rank: rank, address: address,
                                                         secret: configuredSecret, timeout: timeout)
        }
    }
    public func flushed(_ version: UInt64) throws -> Bool { throw notHere("kv_flush_status") }
    public func failed() throws -> [Int32] { throw notHere("kv_failed") }
    public func communicator() throws -> MPIComm { throw notHere("kv_comm") }
    public func locate(key: UnsafeRawBufferPointer) throws -> [Int32] { throw notHere("kv_locate") }

    public func stat(_ what: StatKind) throws -> UInt64 {
        try lock.withLock {
            try checkOpen()
            switch what {
            case .rank: return UInt64(rank)
            case .size: return UInt64(size)
            case .replicas: return UInt64(serverReplicas)
            case .progressThread: return 0
            default: throw notHere("kv_stat(\(what))")
            }
        }
    }

    /// Collective over the client job: once every rank is done, rank 0 tells every server rank
    /// it has not given up on that the job leaves, and the connection is freed without a parting
    /// handshake (see Ports.abandon). A barrier that timed out is still under way on `local`
    /// (a nonblocking collective cannot be cancelled): that communicator is then never freed,
    /// or Open MPI would later progress it freed (measured: a segfault in the next collective).
    public func close() throws {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        closed = true
        var failure: Error?
        var localBusy = false
        do {
            var r = try Collectives.startBarrier(local)
            localBusy = true
            try Collectives.complete(&r, seconds: timeout, what: "kv_close of the client job")
            localBusy = false
            if rank == 0 {
                for s in 0..<link.remoteSize where !deadGateways.contains(s) {
                    try? link.send(try ServiceWire.message(.leave), to: s, tag: ServiceWire.requestTag, seconds: min(timeout, 5))
                }
            }
        } catch {
            failure = error
        }
        Ports.abandon(link.inter)
        if !localBusy { Collectives.free(local) }
        if let failure { throw failure }
    }

    // MARK: internals

    private func notHere(_ call: String) -> KVFailure {
        KVFailure(.misuse, "\(call) is not available on a client handle (kv_connect): the server owns the store")
    }

    private func checkOpen() throws {
        if closed { throw KVFailure(.misuse, "the connection is closed") }
    }

    /// A reply: ok or notFound (other codes are thrown with the server's message), and its bytes.
    private struct Reply {
        let code: KVCode
        let buffer: MessageBuffer
        /// The bytes after the header (borrowed from `buffer`: keep the reply alive meanwhile).
        var body: ByteReader {
            var r = ByteReader(buffer.bytes)
            _ = try? r.read(count: ServiceWire.headerSize)
            return r
        }
    }

    /// One request and its reply. It goes to this rank's gateway; a gateway that does not answer
    /// within `patience` (a server rank that died: clients see no heartbeats), or answers
    /// KV_EPROCFAILED to a put, get or del (a server rank the others excluded), is given up for
    /// good, and an idempotent request (put, get, del: the same outcome if run twice) goes to the
    /// next server rank. A compare-and-swap is not repeated: it waits the full ftkv_timeout and
    /// then reports KV_EPROCFAILED (it may have taken effect).
    @discardableResult
    private func call(_ kind: ServiceWire.Kind, argument: Int64 = 0, bodySize: Int, replyCapacity: Int = 0,
                      _ fill: (inout ByteWriter) throws -> Void) throws -> Reply {
        lock.lock()
        defer { lock.unlock() }
        try checkOpen()
        let id = nextID
        nextID += 1
        var w = try ServiceWire.start(kind, requestID: id, argument: argument, bodySize: bodySize)
        do { try fill(&w) } catch { w.release(); throw error }
        let request = try w.finish()
        let idempotent = kind != .swap
        // A healthy server answers in microseconds, and within a view change of its own (about a
        // second) plus the time to move the bytes: beyond that, its rank is taken as dead.
        let patience = idempotent ? min(timeout, 5 + Double(request.count + replyCapacity) / 50e6) : timeout
        while true {
            guard let gateway = liveGateway() else {
                throw KVFailure(.timedOut, "no server rank answered (all \(link.remoteSize) given up)")
            }
            do {
                return try exchange(request, id: id, with: gateway, seconds: patience, replyCapacity: replyCapacity)
            } catch let f as KVFailure where f.code == .timedOut {
                deadGateways.insert(gateway)
                guard idempotent else {
                    throw KVFailure(.procFailed, "server rank \(gateway) did not answer the compare-and-swap within \(timeout) s; it may have taken effect: read the key")
                }
            } catch let f as KVFailure where f.code == .procFailed && idempotent {
                // The gateway's store failed it even after the server's own retries: that rank
                // was excluded by the others (paused past ftkv_suspect_after, e.g. on a loaded
                // node). It is given up like a dead one; the rest of the server has the data.
                deadGateways.insert(gateway)
            }
        }
    }

    /// This rank's gateway: its own (rank mod server size), or the next one not given up.
    private func liveGateway() -> Int32? {
        let n = link.remoteSize
        for step in 0..<n {
            let g = (rank + step) % n
            if !deadGateways.contains(g) { return g }
        }
        return nil
    }

    private func exchange(_ request: MessageBuffer, id: UInt64, with gateway: Int32, seconds: Double,
                          replyCapacity: Int) throws -> Reply {
        try link.send(request, to: gateway, tag: ServiceWire.requestTag, seconds: seconds)
        let deadline = Deadline(seconds: seconds)
        while true {
            let reply = try link.receive(tag: ServiceWire.replyTag, from: gateway,
                                         maxBytes: ServiceWire.headerSize + 8 + max(replyCapacity, 4096), seconds: seconds,
                                         what: "waiting for server rank \(gateway)")
            var r = ByteReader(reply.bytes)
            let h = try ServiceWire.readHeader(&r)
            // A late reply to an earlier request that timed out: not this one's.
            guard h.kind == .reply, h.requestID == id else {
                if deadline.hasPassed { throw KVFailure(.timedOut, "server rank \(gateway) did not answer within \(seconds) s") }
                continue
            }
            guard let code = KVCode(rawValue: Int32(truncatingIfNeeded: h.argument)) else {
                throw KVFailure(.remote, "server rank \(gateway) answered with unknown code \(h.argument)")
            }
            switch code {
            case .ok, .notFound:
                return Reply(code: code, buffer: reply)
            default:
                throw KVFailure(code, "server rank \(gateway): \(ServiceWire.text(try r.read(count: r.remaining)))")
            }
        }
    }
}
