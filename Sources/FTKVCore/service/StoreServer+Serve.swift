import Glibc

/// Serving connected client jobs (StoreServer's serving loop): each request runs on the engine,
/// each reply is posted without waiting for it.
extension StoreServer {
    /// Serves what one client job has sent; whether anything came.
    func serveOne(_ job: ClientJob) -> Bool {
        var any = false
        do {
            try job.replies.removeAll { try job.link.isDone($0) }
        } catch {
            drop(job, because: "it took no reply for \(timeout) s")
            return true
        }
        while true {
            let arrived: (source: Int32, buffer: MessageBuffer)?
            do {
                arrived = try job.link.poll(tag: ServiceWire.requestTag, maxBytes: ServiceWire.maxRequestBytes, seconds: timeout)
            } catch {
                options.log("ftkv serve: rank \(rank): dropped a message of client job #\(job.number): \(error)")
                return true
            }
            guard let (source, buffer) = arrived else { return any }
            any = true
            job.requests += 1
            if handle(buffer, from: source, of: job) == .left { return true }
        }
    }

    enum Handled { case served, left }

    func handle(_ buffer: MessageBuffer, from source: Int32, of job: ClientJob) -> Handled {
        var r = ByteReader(buffer.bytes)
        guard let h = try? ServiceWire.readHeader(&r) else {
            options.log("ftkv serve: rank \(rank): dropped a malformed message from rank \(source) of client job #\(job.number)")
            return .served
        }
        if h.kind == .leave {
            lock.withLock { clients.removeAll { $0 === job } }
            // Freed without a parting handshake (see Ports.abandon): it would block this loop.
            Ports.abandon(job.link.inter)
            if rank == 0 { options.log("ftkv serve: client job #\(job.number) left (\(job.requests) requests at rank 0)") }
            return .left
        }
        let reply: MessageBuffer
        do {
            reply = try withExtendedLifetime(buffer) { try run(h, body: &r) }
        } catch let f as KVFailure {
            guard let m = try? failureReply(h.requestID, f) else { return .served }
            reply = m
        } catch {
            guard let m = try? failureReply(h.requestID, KVFailure(.internal, "\(error)")) else { return .served }
            reply = m
        }
        do {
            job.replies.append(try job.link.post(reply, to: source, tag: ServiceWire.replyTag, seconds: timeout))
        } catch {
            options.log("ftkv serve: rank \(rank): could not answer rank \(source) of client job #\(job.number): \(error)")
        }
        return .served
    }

    /// Stops serving a job that no longer behaves as a client (this rank only: the others judge
    /// for themselves). Its intercommunicator is freed without the parting handshake.
    func drop(_ job: ClientJob, because reason: String) {
        lock.withLock { clients.removeAll { $0 === job } }
        // MPI may still read a cancelled or unfinished send's bytes: they are kept, not freed.
        abandonedReplies += job.replies
        job.replies.removeAll()
        Ports.abandon(job.link.inter)
        options.log("ftkv serve: rank \(rank): dropped client job #\(job.number): \(reason)")
    }

    func failureReply(_ id: UInt64, _ f: KVFailure) throws -> MessageBuffer {
        try Array(f.message.utf8).withUnsafeBytes { try ServiceWire.message(.reply, requestID: id, argument: Int64(f.code.rawValue), body: $0) }
    }

    /// Runs one request on the engine; its reply. A view change of the servers (a server rank
    /// died) is retried here: the client sees a working store, never the servers' failure.
    func run(_ h: ServiceWire.Header, body r: inout ByteReader) throws -> MessageBuffer {
        func retrying<T>(_ op: () throws -> T) throws -> T {
            var attempts = 0
            while true {
                do { return try op() } catch let f as KVFailure where f.code == .procFailed && attempts < 3 {
                    attempts += 1
                }
            }
        }
        switch h.kind {
        case .put:
            let (key, value) = try ServiceWire.readPut(&r)
            try retrying { try engine.put(key: key, value: value) }
            return try ServiceWire.message(.reply, requestID: h.requestID, argument: 0)
        case .del:
            let key = try ServiceWire.readKey(&r)
            try retrying { try engine.del(key: key) }
            return try ServiceWire.message(.reply, requestID: h.requestID, argument: 0)
        case .get:
            let key = try ServiceWire.readKey(&r)
            let capacity = Int(clamping: max(0, min(h.argument, Int64(Engine.maxValueLength))))
            if scratch == nil { try growScratch(to: 64 << 10) }
            while true {
                let view = UnsafeMutableRawBufferPointer(start: scratch, count: min(scratchBytes, capacity))
                switch try retrying({ try engine.get(key: key, into: view) }) {
                case .notFound:
                    return try ServiceWire.message(.reply, requestID: h.requestID, argument: Int64(KVCode.notFound.rawValue))
                case .found(let length):
                    var w = try ServiceWire.start(.reply, requestID: h.requestID, argument: 0, bodySize: 8 + length)
                    try w.append(UInt64(length))
                    try w.append(UnsafeRawBufferPointer(start: scratch, count: length))
                    return try w.finish()
                case .tooSmall(let length) where length > capacity:
                    var w = try ServiceWire.start(.reply, requestID: h.requestID, argument: 0, bodySize: 8)
                    try w.append(UInt64(length))
                    return try w.finish()
                case .tooSmall(let length):
                    // Fits the client, not the scratch buffer: grow it and read again.
                    try growScratch(to: length)
                }
            }
        case .swap:
            let request = try SwapCodec.read(&r)
            let swapped = try retrying {
                try engine.compareAndSwap(key: request.key, expected: request.expected, desired: request.desired)
            }
            var w = try ServiceWire.start(.reply, requestID: h.requestID, argument: 0, bodySize: 1)
            try w.append(UInt8(swapped ? 1 : 0))
            return try w.finish()
        case .echo:
            return try ServiceWire.message(.reply, requestID: h.requestID, argument: 0, body: try r.read(count: r.remaining))
        case .hello, .stop, .commit, .welcome, .reply, .leave:
            throw KVFailure(.remote, "unexpected \(h.kind) message on the request tag")
        }
    }

    func growScratch(to bytes: Int) throws {
        guard let p = realloc(scratch, max(bytes, 1)) else {
            throw KVFailure(.noMemory, "the server cannot allocate \(bytes) bytes for a value")
        }
        scratch = p
        scratchBytes = max(bytes, 1)
    }
}
