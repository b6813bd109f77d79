/// A view change's re-replication: each key's copies restored on its new replicas, as whole
/// records moved from the senders' arenas into the receivers' (RecordTransfer). Called by
/// `installView` with the lock held, on the survivors' new communicator.
extension Engine {
    /// Sends every record this rank must restore elsewhere and takes in what the others restore
    /// here: the first surviving old replica of a key sends it to each new replica that did not
    /// hold it (`everyHolder`: after an interrupted re-replication nobody knows who holds what,
    /// so every holder sends). `comm` is the transfer's own communicator over the new view.
    /// Returns the record bytes this rank sent. Memory beyond the table: the send window (pooled
    /// buffers); what arrives lands in the table's arena, where it must be held anyway.
    func restoreCopies(over comm: MPIComm, from oldPlacement: Placement, failed: Set<Int32>,
                       everyHolder: Bool) throws -> UInt64 {
        let me = rank
        let newPlacement = placement
        guard let myRank = transport.commRank(of: me) else { throw KVFailure(.internal, "this rank is not in its own view") }
        let transfer = RecordTransfer(comm: comm, size: view.members.count, me: Int(myRank),
                                      pool: batchBuffers, chunk: faults.batchBytes)
        let transport = self.transport
        var sent: UInt64 = 0
        store.forEachRecordSpan { offset, bytes, hash in
            oldPlacement.withReplicas(ofHash: hash) { old in
                guard everyHolder || old.first(where: { !failed.contains($0) }) == me else { return }
                newPlacement.withReplicas(ofHash: hash) { new in
                    // A member of the new view is alive: it held the key iff it was an old replica.
                    for d in new where d != me && (everyHolder || !old.contains(d)) {
                        guard let dest = transport.commRank(of: d) else { continue }
                        transfer.add(offset: offset, bytes: bytes, to: Int(dest))
                        sent &+= UInt64(bytes)
                    }
                }
            }
        }
        let incoming = try transfer.exchangeSizes { request in
            try completeLocked(&request, what: "re-replication: the sizes each rank restores")
        }
        let space = try store.reserveReceiving(bytes: incoming)
        transfer.start(receivingInto: space)
        bulkTransferUnderWay = true
        defer { bulkTransferUnderWay = false }
        do {
            try waitLocked(for: "re-replication: restoring copies on the new replicas") {
                let done = try transfer.advance { offset, count, to in store.copyArenaBytes(from: offset, count: count, to: to) }
                if faults.dieRereplicating && transfer.packedSpans >= 16 {
                    dieForTest("die-rereplicating: a survivor dies during re-replication")
                }
                return done
            }
        } catch {
            let settled = transfer.abandon()
            try store.abandonReceived(mpiMayStillWrite: !settled)
            throw error
        }
        do {
            try store.adoptReceived(maxKeyLength: Engine.maxKeyLength, maxValueLength: Engine.maxValueLength)
        } catch let f as KVFailure where f.code == .remote {
            // Another rank of this job sent bytes that are not records: a defect, not a failure
            // the store can recover from here.
            throw KVFailure(.internal, "re-replication: \(f.message)")
        }
        return sent
    }

    /// Keeps resident, after the table's last record, the room one member's failure brings this
    /// rank: each key that lost a copy gets a new one on a survivor that did not hold it, about
    /// 1/(n-1) of what each survivor holds (nothing when every member holds every key). Without
    /// it those copies land in pages faulted in during the recovery, at first-touch speed. The
    /// cost is that much more resident memory per rank, faulted in by the fence that grew the
    /// table: on this VM (first touch 0.2-1 GB/s with four ranks on two cores) a first fence of
    /// 64 MiB per rank took 0.3-0.5 s longer to save 25 ms of recovery, so it is asked for
    /// (ftkv_recovery_reserve=on), not the default (docs/recovery.md).
    func keepRecoveryReserve() {
        let members = view.members.count
        guard config.recoveryReserve, members > config.replicas else { return }
        store.keepResident(spare: (store.arenaBytesInUse - store.garbageBytes) / (members - 1))
    }
}
