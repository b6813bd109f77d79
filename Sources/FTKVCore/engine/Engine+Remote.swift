import Glibc

/// Requests to other ranks (gets, replicated writes) and serving theirs.
extension Engine {
    func remoteGet(key: UnsafeRawBufferPointer, from owner: Int32,
                   into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome {
        let capacity = UInt64(buffer?.count ?? 0)
        let id = try transport.sendRequest(to: owner, kind: .get, argument: capacity, bodySize: key.count) { w in
            try w.append(key)
        }
        // Waits for the reply, unless the owner is found to have failed meanwhile.
        var answer: Incoming?
        do {
            try waitLocked(for: "get from rank \(owner)") {
                answer = transport.takeReply(id)
                if answer == nil && failedRanks.contains(owner) {
                    throw KVFailure(.procFailed, "rank \(owner) failed before answering a get")
                }
                return answer != nil
            }
        } catch {
            transport.abandon(id)
            throw error
        }
        let reply = answer!
        switch try GetReply.decode(reply, from: owner) {
        case .notFound:
            return .notFound
        case .lengthOnly(let length):
            return buffer == nil ? .found(length: length) : .tooSmall(length: length)
        case .value(let bytes):
            return Engine.deliver(bytes, into: buffer)
        }
    }

    /// Sequential consistency: applies one write on every replica before returning, in the order
    /// the key's primary gives it. The primary stamps the write newer than every write to the key
    /// it ordered before (RecordTable.applyInOrder), so a put that returned is never superseded
    /// by one that happened before it, and concurrent puts resolve the same way on every replica.
    /// A writer that is not the primary pays one more round trip (ask the primary, then the rest).
    func replicateInOrder(key: UnsafeRawBufferPointer, hash: UInt64, value: UnsafeRawBufferPointer, tombstone: Bool) throws {
        let set = placement.replicaRanks(ofHash: hash)
        let primary = set[0]
        let stamp: Stamp
        if primary == rank {
            stamp = try store.applyInOrder(key, hash: hash, value: value, tombstone: tombstone,
                                           interval: writeInterval, writer: UInt32(bitPattern: rank))
        } else {
            let op = RecordView(key: key, value: value, stamp: .zero, isTombstone: tombstone, hash: hash)
            let size = OpCodec.encodedSize(keyCount: key.count, valueCount: value.count)
            let id = try transport.sendRequest(to: primary, kind: .order, argument: 1, bodySize: size) { w in
                try OpCodec.append(op, to: &w)
            }
            let reply = try waitForReply(id, what: "ordering a write at its primary, rank \(primary)")
            try checkAcks([id: reply])
            var body = reply.body
            do {
                stamp = try StampCodec.read(&body)
            } catch {
                throw KVFailure(.remote, "rank \(primary) sent a malformed reply to an ordered write")
            }
        }
        let op = RecordView(key: key, value: value, stamp: stamp, isTombstone: tombstone, hash: hash)
        var ids: [UInt64] = []
        for dest in set.dropFirst() {
            if dest == rank {
                try store.upsert(key, hash: hash, value: value, stamp: stamp, tombstone: tombstone, onlyIfNewer: true)
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
            throw KVFailure(.remote, "rank \(reply.source) did not apply a batch of writes (status \(reply.header.status))")
        }
    }
}
