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

    /// Three steps: an entry barrier, then this interval's writes shipped to their replicas and
    /// acknowledged, then a barrier. After it, every rank's writes from before the fence are
    /// applied on all their replicas, and this rank's gets see them.
    ///
    /// The entry barrier makes a fence interval a snapshot: no rank applies or ships a write of
    /// this interval (not even to its own table) until every rank has entered the fence, so a
    /// slower rank still reading the previous interval never sees it. Writes other threads make
    /// meanwhile go to the next interval, never lost (`shipping` holds this one's until acked).
    func fenceLocked() throws {
        guard shipping == nil else {
            throw KVFailure(.misuse, "kv_fence or kv_close is already running on another thread of this rank (collective calls need one thread per rank)")
        }
        // The whole fence, not only its waits: between them this thread builds batches and
        // applies copies holding the lock, so the progress thread could serve nothing and only
        // took turns on the core from ranks sharing it (4 ranks on 2 cores: put+fence 180-290 k
        // ops/s with it spinning, 340-480 k with no progress thread at all; docs/progress.md).
        applicationWaiters.add(1, ordering: .relaxed)
        defer { applicationWaiters.subtract(1, ordering: .relaxed) }
        let interval = writeInterval
        let number = fencesCompleted + 1
        let outgoing = pending
        pending = spareTable ?? Engine.newPendingTable()
        spareTable = nil
        shipping = outgoing
        writeInterval += 1
        var refused: KVFailure?
        do {
            // Sequential consistency has nothing buffered: its fence is only the final barrier.
            // The entry barrier also adds up every rank's writes: this rank holds about r/n of
            // them, which sizes the store's index once (flush).
            var written = 0
            if config.consistency == .fence {
                written = try countingBarrierLocked(outgoing.count, what: "fence entry barrier")
            }
            // A replica's refusal is reported after the barrier: leaving before it would strand the
            // other ranks in a collective this rank never joins.
            refused = try flush(outgoing, writtenByAll: written)
            try barrierLocked(what: "fence barrier")
        } catch let f as KVFailure where f.code == .procFailed && agreedFencesCompleted >= number {
            // A member died after every rank had entered this fence's final barrier, and another
            // survivor saw the barrier complete: so every write of it was acknowledged (and the
            // view change re-replicated them). It is complete here too; the next call reports
            // the view change.
            pendingViewChangeReport = lastReport
        } catch let f as KVFailure where f.code == .procFailed {
            // The view changed: this interval's writes go back to the pending ones (behind any
            // newer write of the same key), so the retried fence ships them to the new replicas.
            try outgoing.forEach { rec in
                _ = try pending.upsert(rec.key, hash: rec.hash, value: rec.value, stamp: rec.stamp,
                                       tombstone: rec.isTombstone, onlyIfNewer: true)
            }
            shipping = nil
            outgoing.removeAll()
            spareTable = outgoing
            throw f
        }
        fencesCompleted = number
        keepRecoveryReserve()
        // Every replica has applied this interval's deletes (and, under sequential consistency,
        // every delete that returned before this fence): their tombstones can go, once they are
        // worth a pass over the index.
        let tombstones = store.count - store.liveCount
        if tombstones >= max(1024, store.count / 8) { store.reclaimTombstones(through: interval) }
        shipping = nil
        outgoing.removeAll()
        // Keep the grown table for the next interval's writes (a checkpoint loop writes similar
        // amounts each interval) unless other threads already wrote into the fresh one.
        if pending.count == 0 {
            spareTable = pending
            pending = outgoing
        } else {
            spareTable = outgoing
        }
        if let refused { throw refused }
    }

    /// Streams writes to their replicas: groups them by replica rank into batches of at most
    /// `faults.batchBytes` (4 MiB unless a test shrinks it), sends each batch as soon as it is
    /// full, applies local copies directly, and keeps at most `Engine.fenceWindowBytes` of batches
    /// unacknowledged (waiting for acks, and serving other ranks' batches, when over it). Peak
    /// extra memory is one open batch per destination plus the window, not a copy of everything
    /// written; and reused buffers spare the page faults of fresh ones. Returns the failure of a
    /// replica that refused a batch, if one did.
    private func flush(_ writes: RecordTable, writtenByAll: Int) throws -> KVFailure? {
        guard writes.count > 0 else { return nil }
        let arriving = writtenByAll / max(Int(transport.commSize), 1) * placement.replicas
        return try flush(count: writes.count, recordsStayValid: true, arriving: arriving) { body in
            try writes.forEachInWriteOrder(body)
        }
    }

    /// The same for any source of records (`count` of them, about): a restart loading files.
    /// `recordsStayValid`: every record's bytes stay valid
    /// and unchanged until this returns (a detached pending table, not file buffers or the store
    /// itself), so local copies may wait in a PrefetchingApplier. `arriving`: about how many
    /// records this rank will receive and copy locally (by default r/n of its own `count`).
    func flush(count: Int, recordsStayValid: Bool = false, arriving: Int? = nil,
               records forEachRecord: ((RecordView) throws -> Void) throws -> Void) throws -> KVFailure? {
        // The index is sized once for what arrives (RecordTable.reserve(arriving:)). An estimate:
        // if memory for it is short, the records may still fit as they come, so no failure here.
        _ = try? store.reserve(arriving: arriving ?? count / max(Int(transport.commSize), 1) * placement.replicas)
        var batches = [BatchBuilder?](repeating: nil, count: Int(transport.idLimit))
        defer { for b in batches { b?.writer.release() } }
        var localCopies = recordsStayValid ? PrefetchingApplier(into: store) : nil
        defer { localCopies?.release() }
        var inFlight: [(id: UInt64, bytes: Int)] = []
        var inFlightBytes = 0
        var refused: KVFailure?
        let chunk = faults.batchBytes

        // Waits until at most `limit` bytes of batches are unacknowledged (oldest first).
        func settle(to limit: Int) throws {
            while inFlightBytes > limit, let oldest = inFlight.first {
                let reply = try waitForReply(oldest.id, what: "fence: a replica acknowledging a batch")
                inFlight.removeFirst()
                inFlightBytes -= oldest.bytes
                do { try checkAcks([oldest.id: reply]) } catch let f as KVFailure where f.code == .remote { refused = refused ?? f }
            }
        }
        func ship(_ d: Int) throws {
            guard let message = try batches[d]?.seal() else { return }
            batches[d] = nil
            inFlight.append((try transport.sendRequest(message, to: Int32(d)), message.count))
            inFlightBytes += message.count
            try settle(to: Engine.fenceWindowBytes)
        }

        // A local copy: through `self` each record's lookup copied the placement (a retain and a
        // release of its tables per record: 8% of all samples of 400,000 puts and their fence).
        let placement = self.placement
        try forEachRecord { rec in
            try placement.withReplicas(ofHash: rec.hash) { replicas in
                for dest in replicas {
                    if dest == rank {
                        if localCopies != nil {
                            try localCopies!.add(rec)
                        } else {
                            try store.upsert(rec.key, hash: rec.hash, value: rec.value, stamp: rec.stamp,
                                             tombstone: rec.isTombstone, onlyIfNewer: true)
                        }
                        continue
                    }
                    let d = Int(dest)
                    let size = OpCodec.encodedSize(keyCount: rec.key.count, valueCount: rec.value.count)
                    if let b = batches[d], b.count > 0, b.writer.count + size > chunk { try ship(d) }
                    if batches[d] == nil {
                        batches[d] = try BatchBuilder(header: transport.header(.apply, requestID: 0, argument: 0),
                                                      reserving: min(chunk, Wire.headerSize + size * (count + 1)),
                                                      pool: batchBuffers)
                    }
                    try batches[d]!.add(rec)
                }
            }
        }
        try localCopies?.drain()
        for d in batches.indices { try ship(d) }
        try settle(to: 0)
        return refused
    }

    /// Unacknowledged fence batches a rank keeps in flight before it waits for acks.
    static let fenceWindowBytes = 32 << 20

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
            releaseTables()
            lock.unlock()
            flusher?.finish()
            remover?.finish()
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
            // A view change during the fence: retried on the survivors (the writes are kept).
            var attempts = 0
            while true {
                do {
                    try fenceLocked()
                } catch let f as KVFailure where f.code == .procFailed && attempts < 16 {
                    attempts += 1
                    pendingViewChangeReport = nil
                    continue
                } catch {
                    failure = error
                    noteFailure(error, inCollective: true)
                }
                break
            }
        }
        lock.unlock()
        progressThread?.stop()
        // The flush in progress (and one waiting) and a removal pass finish first: the process
        // may exit next.
        flusher?.finish()
        remover?.finish()
        lock.lock()
        progressThread = nil
        switch state {
        case .finalized: break
        case .broken:
            // Sends a dead peer never receives are cancelled (MPI_Finalize would wait for them).
            // The communicator is kept: a collective that timed out is still posted on it, and
            // freeing it under that request crashed Open MPI later, in MPI_Finalize. The leak is
            // one communicator per broken store.
            transport.finishOutstanding(until: Deadline(seconds: 0))
        default:
            transport.finishOutstanding(until: Deadline(seconds: min(config.timeoutSeconds, 5)))
            Collectives.free(transport.comm)
            for c in survivorComms { Collectives.free(c) }
            survivorComms = []
            if let c = creationComm { Collectives.free(c) }
            creationComm = nil
        }
        state = .closed
        releaseTables()
        lock.unlock()
        Lifecycle.unregister(self)
        if let failure { throw failure }
    }

    /// A closed store's records go at once, not when the last reference to the engine does (a
    /// thread's handle cache may hold one until that thread's next call). Lock held.
    func releaseTables() {
        store.removeAll(releasingMemory: true)
        pending.removeAll(releasingMemory: true)
        shipping = nil
    }
}

/// One apply message under construction: header first (request id and op count patched when
/// sealed), then ops.
struct BatchBuilder {
    var writer: ByteWriter
    var count: UInt64 = 0

    /// A batch expected to fill a pool buffer takes one (reused from earlier fences).
    init(header: Wire.Header, reserving bytes: Int, pool: BatchBufferPool) throws {
        writer = pool.fits(bytes) ? try ByteWriter(pooled: pool) : try ByteWriter(reserving: max(bytes, Wire.headerSize))
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
