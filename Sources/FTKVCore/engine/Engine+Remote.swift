import Glibc

/// Requests to other ranks (gets, replicated writes) and serving theirs.
extension Engine {
    func remoteGet(key: UnsafeRawBufferPointer, from owner: Int32,
                   into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome {
        let capacity = UInt64(buffer?.count ?? 0)
        let id = try transport.sendRequest(to: owner, kind: .get, argument: capacity, bodySize: key.count) { w in
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

    /// Applies one write on every replica before returning (sequential consistency).
    func replicate(_ op: RecordView) throws {
        var ids: [UInt64] = []
        try placement.withReplicas(ofHash: op.hash) { set in
            for dest in set {
                if dest == rank {
                    try store.upsert(op.key, hash: op.hash, value: op.value, stamp: op.stamp,
                                     tombstone: op.isTombstone, onlyIfNewer: true)
                } else {
                    let size = OpCodec.encodedSize(keyCount: op.key.count, valueCount: op.value.count)
                    ids.append(try transport.sendRequest(to: dest, kind: .apply, argument: 1, bodySize: size) { w in
                        try OpCodec.append(op, to: &w)
                    })
                }
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
            let key = try body.read(count: body.remaining)
            found = store.find(key, hash: StableHash.hash(key)).flatMap { $0.isTombstone ? nil : $0 }
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
                    try store.upsert(key, hash: StableHash.hash(key), value: value, stamp: stamp,
                                     tombstone: tombstone, onlyIfNewer: true)
                    applied += 1
                }
            } catch {
                status = .failed
            }
            try Wire.write(transport.header(.applyAck, status: status, requestID: h.requestID, argument: applied), to: &w)
        case .getReply, .applyAck:
            return nil // a reply kind on the request tag: not ours to answer
        }
        return try w.finish()
    }

    private func replyKind(_ kind: Wire.Kind) -> Wire.Kind {
        kind == .get ? .getReply : .applyAck
    }
}
