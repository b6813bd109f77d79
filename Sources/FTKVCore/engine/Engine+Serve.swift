/// Answering other ranks' requests against this rank's store. Every request is untrusted input:
/// a malformed one gets a `failed` reply (or none, if even its header is unusable) and is counted;
/// nothing here traps, and nothing a peer sends can mark this store broken.
extension Engine {
    /// Answers one request. Runs under the lock (from a wait loop, a local call or the progress
    /// thread). Returns the reply to send, or nil for none.
    func serve(_ request: Incoming) -> MessageBuffer? {
        let h = request.header
        if Wire.isNotice(h.kind) {
            noticed(request)
            return nil
        }
        guard let replyKind = Wire.replyKind(to: h.kind) else {
            transport.noteDropped()
            return nil
        }
        requestsServed += 1
        var status = Wire.Status.ok
        var reply: MessageBuffer?
        if h.epoch != view.epoch {
            transport.noteDropped()
            status = .staleEpoch
        } else if faults.failApplies && h.kind != .get {
            status = .failed
        } else if h.kind == .swap {
            // Answered now, or once every replica applied the swap (Engine+Swap).
            return serveSwap(request)
        } else {
            do {
                reply = try answer(request)
            } catch {
                transport.noteDropped()
                status = .failed
            }
        }
        // Out of memory even for a header: no reply, the requester times out.
        if reply == nil { reply = try? headerOnly(replyKind, status: status, requestID: h.requestID, argument: 0) }
        if faults.truncateReplies, let r = reply, r.count > Wire.headerSize { r.setCount(r.count - 1) }
        return reply
    }

    /// The reply to a well-formed request of this epoch; throws on a malformed body.
    private func answer(_ request: Incoming) throws -> MessageBuffer {
        let h = request.header
        var body = request.body
        var w: ByteWriter
        switch h.kind {
        case .get:
            let key = try body.read(count: body.remaining)
            try Engine.checkKey(key)
            let found = store.find(key, hash: StableHash.hash(key)).flatMap { $0.isTombstone ? nil : $0 }
            guard let rec = found else { return try headerOnly(.getReply, status: .notFound, requestID: h.requestID, argument: 0) }
            let fits = UInt64(rec.value.count) <= h.argument
            // Allocated at its exact size: the value is copied once, into the reply.
            w = try ByteWriter(reserving: Wire.headerSize + 8 + (fits ? rec.value.count : 0))
            try Wire.write(transport.header(.getReply, status: fits ? .ok : .notSent, requestID: h.requestID, argument: 0), to: &w)
            try w.append(UInt64(rec.value.count))
            if fits { try w.append(rec.value) }
        case .apply:
            if deferredApplies != nil {
                // This rank is streaming its table to others (re-replication): the batch is
                // checked now, acknowledged, and applied once the stream is done (Engine+ViewChange).
                var check = body
                let valid = (try? OpCodec.forEach(in: &check, count: h.argument) { _, _, _, _ in }) != nil
                if valid { deferredApplies!.append(request) } else { transport.noteDropped() }
                return try headerOnly(.applyAck, status: valid ? .ok : .failed, requestID: h.requestID, argument: valid ? h.argument : 0)
            }
            let (applied, ok) = applyBatch(request)
            return try headerOnly(.applyAck, status: ok ? .ok : .failed, requestID: h.requestID, argument: applied)
        case .order:
            var stamp = Stamp.zero
            try OpCodec.forEach(in: &body, count: 1) { key, value, _, tombstone in
                stamp = try store.applyInOrder(key, hash: StableHash.hash(key), value: value, tombstone: tombstone,
                                               interval: writeInterval, writer: UInt32(bitPattern: request.source))
            }
            w = try ByteWriter(reserving: Wire.headerSize + StampCodec.size)
            try Wire.write(transport.header(.applyAck, status: .ok, requestID: h.requestID, argument: 1), to: &w)
            try StampCodec.append(stamp, to: &w)
        case .swap:
            throw KVFailure(.internal, "a compare-and-swap reached the generic answer")
        case .getReply, .applyAck, .swapReply, .heartbeat, .failed, .propose, .newView, .excluded, .ready:
            throw KVFailure(.remote, "a reply kind sent as a request")
        }
        return try w.finish()
    }

    /// Applies an apply batch to this rank's table: how many ops were applied, and whether all
    /// were (a malformed op, or no memory, stops it).
    func applyBatch(_ request: Incoming) -> (applied: UInt64, ok: Bool) {
        let count = request.header.argument
        var body = request.body
        var applier = PrefetchingApplier(into: store)
        defer { applier.release() }
        do {
            // At most one index resize for the batch (its count is bounded by the bytes present).
            try store.reserve(arriving: Int(min(count, UInt64(body.remaining / OpCodec.headerSize))))
            try OpCodec.forEach(in: &body, count: count) { key, value, stamp, tombstone in
                try applier.add(RecordView(key: key, value: value, stamp: stamp, isTombstone: tombstone,
                                           hash: StableHash.hash(key)))
            }
            try applier.drain()
            return (UInt64(applier.applied), true)
        } catch {
            // The ops decoded before a malformed one are still applied, as before the ring.
            try? applier.drain()
            transport.noteDropped()
            return (UInt64(applier.applied), false)
        }
    }

    /// A reply that is only a header.
    func headerOnly(_ kind: Wire.Kind, status: Wire.Status, requestID: UInt64, argument: UInt64) throws -> MessageBuffer {
        var w = try ByteWriter(reserving: Wire.headerSize)
        try Wire.write(transport.header(kind, status: status, requestID: requestID, argument: argument), to: &w)
        return try w.finish()
    }
}

/// What a get reply says, checked: the bytes come from another process.
enum GetReply {
    case notFound
    case lengthOnly(Int)
    case value(UnsafeRawBufferPointer)

    /// Decodes a get reply (a view into `reply`'s buffer); a refusal or malformed reply is
    /// KV_EREMOTE, never a trap.
    static func decode(_ reply: Incoming, from owner: Int32) throws -> GetReply {
        var body = reply.body
        switch reply.header.status {
        case .notFound:
            return .notFound
        case .ok, .notSent:
            guard let raw = try? body.read(UInt64.self), raw <= UInt64(Engine.maxValueLength) else {
                throw KVFailure(.remote, "rank \(owner) sent a malformed get reply (bad length)")
            }
            let length = Int(raw)
            if reply.header.status == .notSent { return .lengthOnly(length) }
            guard body.remaining == length, let bytes = try? body.read(count: length) else {
                throw KVFailure(.remote, "rank \(owner) sent a malformed get reply (\(body.remaining) value bytes for a length of \(length))")
            }
            return .value(bytes)
        case .staleEpoch:
            throw KVFailure(.remote, "rank \(owner) refused the get: it is in another membership epoch")
        case .failed, .lost:
            throw KVFailure(.remote, "rank \(owner) could not answer the get")
        }
    }
}
