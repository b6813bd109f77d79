import CMPI

/// kv_fence and kv_close: shipping buffered writes to their replicas, then agreeing they landed.
extension Engine {
    public func fence() throws {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        do {
            try fenceLocked()
        } catch {
            noteFailure(error, inCollective: true)
            throw error
        }
    }

    /// Ships this interval's writes, waits for every replica's ack, then a barrier: after it,
    /// every rank's writes from before the fence are applied on all their replicas, and this
    /// rank's gets see them. Writes other threads make meanwhile go to the next interval.
    func fenceLocked() throws {
        guard shipping == nil else {
            throw KVFailure(.misuse, "kv_fence or kv_close is already running on another thread of this rank (collective calls need one thread per rank)")
        }
        let interval = writeInterval
        let outgoing = pending
        pending = spareTable ?? RecordTable(hugePages: false)
        spareTable = nil
        shipping = outgoing
        writeInterval += 1
        // A replica's refusal is reported after the barrier: leaving before it would strand the
        // other ranks in a collective this rank never joins.
        let refused = try flush(outgoing)
        try barrierLocked(what: "fence barrier")
        readSnapshot = interval + 1
        // Every rank has entered this fence: older versions of keys rewritten in this interval
        // (or before) can no longer be read.
        try store.prune(completed: interval)
        shipping = nil
        outgoing.removeAll()
        spareTable = outgoing
        if let refused { throw refused }
    }

    /// Groups writes by replica rank into batches (chunks of Wire.batchChunkBytes), applies the
    /// local ones directly and sends the rest, then waits for the acks. Returns the failure of a
    /// replica that refused a batch, if one did.
    private func flush(_ writes: RecordTable) throws -> KVFailure? {
        guard writes.count > 0 else { return nil }
        // This rank holds about r/n of the keys written.
        try store.reserve(additionalKeys: writes.count * placement.replicas / max(Int(transport.size), 1))
        var batches = [BatchBuilder?](repeating: nil, count: Int(transport.size))
        var sealed: [(dest: Int32, message: MessageBuffer)] = []
        defer { for b in batches { b?.writer.release() } }
        try writes.forEach { rec in
            try placement.withReplicas(ofHash: rec.hash) { set in
                for dest in set {
                    if dest == rank {
                        try store.apply(rec.key, hash: rec.hash, value: rec.value, stamp: rec.stamp, tombstone: rec.isTombstone)
                        continue
                    }
                    let d = Int(dest)
                    let size = OpCodec.encodedSize(keyCount: rec.key.count, valueCount: rec.value.count)
                    if let b = batches[d], b.count > 0, b.writer.count + size > faults.batchBytes {
                        sealed.append((dest, try batches[d]!.seal()))
                        batches[d] = nil
                    }
                    if batches[d] == nil { batches[d] = try BatchBuilder(header: transport.header(.apply, requestID: 0, argument: 0)) }
                    try batches[d]!.add(rec)
                }
            }
        }
        for d in batches.indices where batches[d] != nil {
            sealed.append((Int32(d), try batches[d]!.seal()))
            batches[d] = nil
        }
        var ids: [UInt64] = []
        for (dest, message) in sealed {
            ids.append(try transport.sendRequest(message, to: dest))
        }
        do {
            try checkAcks(try waitForReplies(ids, what: "fence: replicas acknowledging \(ids.count) batches"))
        } catch let f as KVFailure where f.code == .remote {
            return f
        }
        return nil
    }

    /// Collective: flushes (as fence), stops the progress thread and frees the communicator.
    /// The engine is unusable afterwards whatever the result.
    public func close() throws {
        lock.lock()
        var failure: Error?
        switch state {
        case .closed:
            lock.unlock()
            throw KVFailure(.misuse, "store '\(name)' is already closed")
        case .finalized:
            state = .closed
            lock.unlock()
            Lifecycle.unregister(self)
            throw KVFailure(.misuse, "MPI was finalised before kv_close: memory released, nothing flushed")
        case .broken(let f):
            failure = f
        case .closing:
            lock.unlock()
            throw KVFailure(.misuse, "store '\(name)' is already being closed by another thread")
        case .open:
            // From here on other threads' calls get KV_EMISUSE: a write accepted now would be lost.
            state = .closing
            do { try fenceLocked() } catch { failure = error; noteFailure(error, inCollective: true) }
        }
        lock.unlock()
        progressThread?.stop()
        lock.lock()
        progressThread = nil
        // A broken store keeps its communicator: a collective that timed out is still posted on
        // it, and freeing it under that request crashed Open MPI later (in MPI_Finalize). The
        // leak is one communicator per broken store.
        switch state {
        case .finalized, .broken: break
        default:
            transport.finishOutstanding(until: Deadline(seconds: min(config.timeoutSeconds, 5)))
            var comm: MPI_Comm? = transport.comm
            CommunicatorGate.exclusively { _ = MPI_Comm_free(&comm) }
        }
        state = .closed
        lock.unlock()
        Lifecycle.unregister(self)
        if let failure { throw failure }
    }
}

/// One apply message under construction: header first (request id and op count patched when
/// sealed), then ops.
struct BatchBuilder {
    var writer: ByteWriter
    var count: UInt64 = 0

    init(header: Wire.Header) throws {
        writer = try ByteWriter(reserving: 64 << 10)
        try Wire.write(header, to: &writer)
    }

    mutating func add(_ rec: RecordView) throws {
        try OpCodec.append(rec, to: &writer)
        count += 1
    }

    mutating func seal() throws -> MessageBuffer {
        Wire.setArgument(count, in: writer.base.unsafelyUnwrapped)
        return try writer.finish()
    }
}
