import Glibc

/// Online recovery: after failures, the survivors agree on a new view (ViewAgreement), shrink
/// the store's communicator to it (MPI_Comm_create_group, only once every survivor is known to
/// be alive and about to call it), restore `ftkv_replicas` copies of every key on the new
/// placement, and carry on. Each application call that was waiting when the view changed, or
/// is the first after it, returns KV_EPROCFAILED once.
///
/// The agreement runs in every progress round (the progress thread's or a wait loop's), under
/// the lock. The shrink and the re-replication (`installView`) run where no communicator gate is
/// held: a wait loop, or the progress thread between rounds.
extension Engine {
    /// Advances the agreement (lock held). Cheap when nothing failed.
    func advanceViewChange() {
        // A survivor of the decision failed before this rank began creating the communicators:
        // the decision is dropped (nobody can have completed a creation that needs that member)
        // and the agreement goes on with the larger failed set, under the next coordinator if
        // the coordinator was the one that died (the proposals it had received are kept).
        if let decided = decidedExclusion, installer == nil,
           view.members.contains(where: { failedRanks.contains($0) && !decided.contains($0) }) {
            decidedExclusion = nil
        }
        guard decidedExclusion == nil, !failedRanks.isEmpty, installer == nil else { return }
        switch state {
        case .open, .closing: break
        default: return
        }
        if agreement?.view != view { agreement = ViewAgreement(view: view) }
        guard !agreement!.failedMembers(failedRanks).isEmpty else { return }
        if agreement!.canDecide(me: rank, failed: failedRanks) {
            let excluded = agreement!.failedMembers(failedRanks)
            agreement!.own(fencesCompleted: fencesCompleted)
            let agreed = agreement!.fencesCompleted
            for member in agreement!.survivors(failedRanks) where member != rank {
                try? transport.sendNotice(.newView, argument: agreed, members: excluded, to: member)
                if faults.dieDeciding { dieForTest("die-deciding: the coordinator dies after telling one survivor") }
            }
            // A stopped member receives this when it wakes up: its calls fail from then on.
            // (To a dead one, an eager send just completes.)
            for member in excluded {
                try? transport.sendNotice(.excluded, argument: UInt64(view.epoch &+ 1), to: member)
            }
            agreedFencesCompleted = agreed
            decidedExclusion = excluded
            announceReady(excluded)
        } else if let coordinator = agreement!.proposalDue(me: rank, failed: failedRanks) {
            // From here on this rank completes no collective of this epoch (see waitLocked), so
            // the count it proposes is final.
            try? transport.sendNotice(.propose, argument: fencesCompleted, members: agreement!.failedMembers(failedRanks), to: coordinator)
        }
    }

    /// A view-change notice of this epoch (lock held).
    func viewChangeNoticed(_ notice: Incoming) {
        let h = notice.header
        var body = notice.body
        var members: [Int32] = []
        while body.remaining >= 4, let m = try? body.read(Int32.self) {
            guard m >= 0, m < transport.idLimit else {
                transport.noteDropped()
                return
            }
            members.append(m)
        }
        switch h.kind {
        case .propose:
            for m in members where m != rank { declareFailed(m, announce: false) }
            if agreement?.view != view { agreement = ViewAgreement(view: view) }
            agreement!.proposal(from: notice.source, fencesCompleted: h.argument)
        case .newView:
            // For the next epoch (this one's notices only), with the agreed count of fences. A
            // decision that excludes more than the one this rank holds replaces it (a survivor
            // of the first one died before anyone created communicators for it).
            let decided = members.filter { view.contains($0) }
            guard !members.contains(rank), installer == nil, h.argument >= fencesCompleted,
                  decidedExclusion == nil || decided.contains(where: { !decidedExclusion!.contains($0) }) else {
                transport.noteDropped()
                return
            }
            for m in members { declareFailed(m, announce: false) }
            guard decided.allSatisfy(failedRanks.contains) else { return }
            agreedFencesCompleted = h.argument
            decidedExclusion = decided
            announceReady(decided)
        case .ready:
            readyFor[notice.source] = members
        case .excluded:
            excludedByOthers.store(true, ordering: .releasing)
            state = .broken(KVFailure(.procFailed, "this rank was excluded from store '\(name)' by the other members (they found it "
                + "unresponsive for ftkv_suspect_after = \(config.suspectAfterSeconds) s); the store goes on without it at epoch "
                + "\(h.argument). Close the handle"))
        default:
            transport.noteDropped()
        }
    }

    /// Tells every survivor of a decision that this rank knows it: each creates the next view's
    /// communicators (a blocking call no failure can interrupt without ULFM) only once every
    /// survivor is known to be alive and about to, so a coordinator that dies half-way through
    /// announcing its decision leaves nobody blocked: the others find it dead and decide again.
    private func announceReady(_ excluded: [Int32]) {
        for member in view.members where member != rank && !excluded.contains(member) {
            try? transport.sendNotice(.ready, argument: UInt64(view.epoch &+ 1), members: excluded, to: member)
        }
    }

    /// Whether every survivor of the decision said it is ready for it.
    private func everyoneReady(for excluded: [Int32]) -> Bool {
        view.members.allSatisfy { $0 == rank || excluded.contains($0) || readyFor[$0] == excluded }
    }

    /// Test-only: a fail-stop death at a chosen point (FTKV_TEST_FAULT), named on stderr.
    func dieForTest(_ what: String) -> Never {
        fputs("ftkv: test fault \(what): rank \(rank) kills itself\n", stderr)
        fflush(stderr)
        kill(getpid(), SIGKILL)
        while true { pause() }
    }

    /// Shrinks to the decided view and re-replicates, if a view was decided and every survivor
    /// is ready for it. Call with the lock held and no communicator gate held
    /// (MPI_Comm_create_group takes it exclusively).
    /// A failure here other than a further failed member leaves the store broken. Returns
    /// whether it installed (or tried to install) a view.
    @discardableResult
    func installDecidedView() -> Bool {
        guard let excluded = decidedExclusion, installer == nil, everyoneReady(for: excluded) else { return false }
        installer = pthread_self()
        defer { installer = nil }
        let started = monotonicNanos()
        do {
            try installView(excluding: excluded)
        } catch let f as KVFailure where f.code == .procFailed {
            // Another member failed during re-replication: the next view change follows, and
            // re-replicates from whatever every survivor holds.
        } catch {
            noteFailure(error, inCollective: true)
        }
        lastRecoveryNanos = monotonicNanos() &- started
        return true
    }

    private func installView(excluding excluded: [Int32]) throws {
        decidedExclusion = nil
        guard let next = view.excluding(Set(excluded)), next.contains(rank) else {
            throw KVFailure(.internal, "the decided view does not include this rank")
        }
        // 1. The new communicator: every survivor proposed (so was alive moments ago) and was
        //    told the decision.
        let old = transport
        //    With it, the application's communicator of the survivors (kv_comm), made now that
        //    they are all here rather than in a collective kv_comm that a busy rank could stall.
        let tag = Int32(next.epoch % 10_000) * 3 // tags up to 30,001: MPI guarantees 32,767
        guard let parent = creationComm else { throw KVFailure(.internal, "no communicator to create the survivors' from") }
        creatingCommunicators = true
        let created = Result { try Collectives.createGroups(parent, ranks: next.members, tags: [tag, tag + 1, tag + 2]) }
        creatingCommunicators = false
        let comms = try created.get()
        let comm = comms[0]
        survivorComms.append(comms[1])
        applicationComm = comms[1]
        // What is still in flight on the old communicator belongs to the old epoch: cancelled.
        // The old communicator itself is never freed (a collective may still be posted on it):
        // one communicator per view change.
        old.finishOutstanding(until: Deadline(seconds: 0))
        abandonSwaps()
        let oldPlacement = placement
        let failedNow = failedRanks
        if oldPlacement.replicaSetShares().keys.contains(where: { $0.allSatisfy(failedNow.contains) }) {
            lostPlacements.append((oldPlacement, failedNow))
        }
        adopt(Transport(comm: comm, me: rank, members: next.members, idLimit: old.idLimit, receiveTimeout: old.receiveTimeout))
        view = next
        placement = Placement(view: next, replicas: config.replicas)
        agreement = nil
        readyFor = [:]
        pendingViewChangeReport = (pendingViewChangeReport ?? []) + excluded
        // The next commit writes a new base file: this rank's file number and records changed.
        lastCommittedFile = nil
        if let sender = heartbeatSender {
            try sender.retarget(comm: comm, header: heartbeatHeader(),
                                dest: heartbeats.successor(failed: failedRanks).flatMap(transport.commRank(of:)) ?? -1)
        }

        // 2. Re-replication: each key's copies on its new replicas (Engine+Rereplication).
        //    Other ranks' apply batches that arrive meanwhile (none should: every survivor is
        //    still installing) are acknowledged and applied after it: the table takes no
        //    appends while records land in its tail.
        let everyHolder = !replicasComplete
        replicasComplete = false
        lastRecoveryBytes = 0
        deferredApplies = []
        let restored = Result { try restoreCopies(over: comms[2], from: oldPlacement, failed: failedRanks, everyHolder: everyHolder) }
        let received = deferredApplies ?? []
        deferredApplies = nil
        // Acknowledged, so applied even if the re-replication was interrupted.
        for batch in received where !applyBatch(batch).ok {
            throw KVFailure(.noMemory, "could not apply a batch another rank sent during the re-replication")
        }
        lastRecoveryBytes = try restored.get()
        if faults.dieRereplicating { dieForTest("die-rereplicating: a survivor dies during re-replication") }
        try barrierLocked(what: "re-replication after a view change")
        // 3. Every key has its copies: drop those this rank no longer holds a replica of.
        let current = placement, me = rank
        try store.drop { hash in !current.withReplicas(ofHash: hash) { $0.contains(me) } }
        replicasComplete = true
        // The re-replication's communicator is done with (the barrier came after all its
        // traffic); after an interrupted one it is left, like the old view's.
        Collectives.free(comms[2])
    }

    /// The heartbeat frame's header, in the current epoch. Never skewed by the stale-epoch test
    /// fault, which is about requests and replies (a rank whose heartbeats were dropped would be
    /// excluded, and the test would see a view change instead).
    func heartbeatHeader() -> Wire.Header {
        Wire.Header(kind: .heartbeat, status: .ok, epoch: view.epoch, sender: rank, requestID: 0, argument: 0)
    }

    /// Makes `t` the store's transport (epochs from the view, test faults carried over).
    func adopt(_ t: Transport) {
        if t !== transport {
            t.messagesSent = transport.messagesSent
            t.bytesSent = transport.bytesSent
        }
        t.epochSource = { [unowned self] in self.view.epoch }
        t.bufferPool = batchBuffers
        if faults.staleEpoch { t.epochSkew = 1 }
        transport = t
    }

    /// The failure an interrupted or first call reports after a view change (consumed; a fence
    /// that turns out complete puts it back with `lastReport`).
    func viewChangeFailure() -> KVFailure {
        let failed = (pendingViewChangeReport ?? failedRanks.sorted()).sorted()
        lastReport = failed
        pendingViewChangeReport = nil
        let names = failed.map(String.init).joined(separator: ", ")
        return KVFailure(.procFailed, "rank\(failed.count == 1 ? "" : "s") \(names) failed; store '\(name)' goes on with "
            + "\(view.members.count) members at epoch \(view.epoch) (kv_comm gives their communicator). The call did not complete: retry it")
    }

    /// Whether the view must change (a member of it is known to have failed).
    var viewChangeNeeded: Bool { !failedRanks.isEmpty && view.members.contains { failedRanks.contains($0) } }

    /// Whether the other members excluded this rank (see `excludedByOthers`).
    public var wasExcluded: Bool { excludedByOthers.load(ordering: .acquiring) }

    /// The epoch and the live members' communicator once no view change is under way (nil
    /// meanwhile), without reporting a view change: for a server's own acceptors.
    var settledMembership: (epoch: UInt32, comm: MPIComm)? {
        lock.withLock {
            guard !viewChangeNeeded, decidedExclusion == nil, installer == nil, let applicationComm else { return nil }
            return (view.epoch, applicationComm)
        }
    }

    /// kv_comm: the live members' communicator (ranks in member order): the one given to
    /// kv_open until a member fails, then the survivors' (the store's; freed by kv_close).
    public func communicator() throws -> MPIComm {
        try lock.withLock {
            try checkUsable()
            guard let applicationComm else { throw KVFailure(.misuse, "store '\(name)' has no communicator") }
            return applicationComm
        }
    }
}
