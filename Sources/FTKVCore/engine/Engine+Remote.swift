import Glibc

/// Requests to other ranks (gets, replicated writes) and serving theirs.
extension Engine {
    func remoteGet(key: UnsafeRawBufferPointer, from owner: Int32, snapshot: UInt64,
                   into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome {
        let capacity = UInt64(buffer?.count ?? 0)
        let id = try transport.sendRequest(to: owner, kind: .get, argument: capacity, bodySize: 8 + key.count) { w in
            try w.append(snapshot)
            try w.append(key)
        }
        let reply = try waitForReply(id, what: "get from rank \(owner)")
        var body = reply.body
        switch reply.header.status {
        case .notFound:
            return .notFound
        case .ok, .notSent:
            let length = Int(try body.read(UInt64.self))
            if reply.header.status == .notSent {
                return buffer == nil ? .found(length: length) : .tooSmall(length: length)
            }
            return Engine.deliver(try body.read(count: length), into: buffer)
        case .staleEpoch, .failed:
            throw KVFailure(.mpi, "rank \(owner) refused the get (status \(reply.header.status))")
        }
    }

    /// Sequential consistency: applies one write on every replica before returning, in the order
    /// the key's primary gives it. The primary stamps the write newer than every write to the key
    /// it ordered before (SnapshotStore.orderedStamp), so a put that returned is never superseded
    /// by one that happened before it, and concurrent puts resolve the same way on every replica.
    /// A writer that is not the primary pays one more round trip (ask the primary, then the rest).
    func replicateInOrder(key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer, tombstone: Bool) throws {
        let set = placement.replicaRanks(ofHash: hash)
        let primary = set[0]
        let stamp: Stamp
        if primary == rank {
            stamp = store.orderedStamp(key, hash: hash, interval: writeInterval, writer: UInt32(bitPattern: rank))
            try store.apply(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone)
        } else {
            let op = RecordView(key: key, value: value, stamp: .zero, isTombstone: tombstone, hash: hash)
            let size = OpCodec.encodedSize(keyCount: key.count, valueCount: value.count)
            let id = try transport.sendRequest(to: primary, kind: .order, argument: 1, bodySize: size) { w in
                try OpCodec.append(op, to: &w)
            }
            let reply = try waitForReply(id, what: "ordering a write at its primary, rank \(primary)")
            try checkAcks([id: reply])
            var body = reply.body
            stamp = try StampCodec.read(&body)
        }
        let op = RecordView(key: key, value: value, stamp: stamp, isTombstone: tombstone, hash: hash)
        var ids: [UInt64] = []
        for dest in set.dropFirst() {
            if dest == rank {
                try store.apply(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone)
            } else {
                let size = OpCodec.encodedSize(keyCount: key.count, valueCount: value.count)
                ids.append(try transport.sendRequest(to: dest, kind: .apply, argument: 1, bodySize: size) { w in
                    try OpCodec.append(op, to: &w)
                })
            }
        }
        try checkAcks(try waitForReplies(ids, what: "replicated put"))
    }

    func checkAcks(_ replies: [UInt64: Incoming]) throws {
        for reply in replies.values where reply.header.status != .ok {
            throw KVFailure(.mpi, "rank \(reply.source) did not apply a batch (status \(reply.header.status))")
        }
    }

    /// Answers one request from another rank. Runs under the lock (from a wait loop or the
    /// progress thread). Returns the reply to send.
    func serve(_ request: Incoming) throws -> MessageBuffer? {
        requestsServed += 1
        let h = request.header
        var body = request.body
        // The one lookup a get needs, done first so the reply is allocated at its exact size.
        var found: RecordView?
        if h.kind == .get && h.epoch == view.epoch {
            let snapshot = try body.read(UInt64.self)
            let key = try body.read(count: body.remaining)
            found = store.find(key, hash: StableHash.hash(key), snapshot: snapshot).flatMap { $0.isTombstone ? nil : $0 }
        }
        let fits = found.map { UInt64($0.value.count) <= h.argument } ?? false
        var w = try ByteWriter(reserving: Wire.headerSize + 8 + (fits ? found!.value.count : 0))
        defer { w.release() }
        guard h.epoch == view.epoch else {
            try Wire.write(transport.header(replyKind(h.kind), status: .staleEpoch, requestID: h.requestID, argument: 0), to: &w)
            return try w.finish()
        }
        switch h.kind {
        case .get:
            guard let rec = found else {
                try Wire.write(transport.header(.getReply, status: .notFound, requestID: h.requestID, argument: 0), to: &w)
                return try w.finish()
            }
            try Wire.write(transport.header(.getReply, status: fits ? .ok : .notSent, requestID: h.requestID, argument: 0), to: &w)
            try w.append(UInt64(rec.value.count))
            if fits { try w.append(rec.value) }
        case .apply:
            var applied: UInt64 = 0
            var status = Wire.Status.ok
            do {
                try OpCodec.forEach(in: &body, count: h.argument) { key, value, stamp, tombstone in
                    try store.apply(key, hash: StableHash.hash(key), value: value, stamp: stamp, tombstone: tombstone)
                    applied += 1
                }
            } catch {
                status = .failed
            }
            try Wire.write(transport.header(.applyAck, status: status, requestID: h.requestID, argument: applied), to: &w)
        case .order:
            var stamp = Stamp.zero
            var status = Wire.Status.ok
            do {
                try OpCodec.forEach(in: &body, count: 1) { key, value, _, tombstone in
                    let hash = StableHash.hash(key)
                    stamp = store.orderedStamp(key, hash: hash, interval: writeInterval, writer: UInt32(bitPattern: request.source))
                    try store.apply(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone)
                }
            } catch {
                status = .failed
            }
            try Wire.write(transport.header(.applyAck, status: status, requestID: h.requestID, argument: status == .ok ? 1 : 0), to: &w)
            try StampCodec.append(stamp, to: &w)
        case .getReply, .applyAck:
            return nil // a reply kind on the request tag: not ours to answer
        }
        return try w.finish()
    }

    private func replyKind(_ kind: Wire.Kind) -> Wire.Kind {
        kind == .get ? .getReply : .applyAck
    }
}
