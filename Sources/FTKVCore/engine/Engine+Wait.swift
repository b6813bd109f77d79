/// Waiting for other ranks. Every wait has a deadline (ftkv_timeout), serves incoming requests
/// while it waits (so two ranks waiting on each other both progress, whatever the thread level),
/// and drops the lock between polls so the progress thread and other threads get in.
extension Engine {
    /// Polls until `done` says so. Call with the lock held; returns with it held.
    /// While an application thread waits here it serves requests itself, so the progress thread
    /// stands aside (sleeps) rather than compete for a core (`applicationWaiters`).
    func waitLocked(for what: @autoclosure () -> String, until done: () throws -> Bool) throws {
        // Once a member of this view is known to have failed, nothing of this epoch completes
        // (see ViewAgreement: the count of completed fences this rank proposed stays true).
        if !viewFrozen, try done() { return }
        let epoch = view.epoch
        applicationWaiters.add(1, ordering: .relaxed)
        defer { applicationWaiters.subtract(1, ordering: .relaxed) }
        try Polling.until(seconds: config.timeoutSeconds, pause: { backoff in
            lock.unlock()
            backoff.pause()
            lock.lock()
        }, {
            // Another thread may have closed the store (or MPI) while the lock was dropped: its
            // communicator may be gone, so no MPI call on it from here.
            switch state {
            case .finalized: throw KVFailure(.misuse, "MPI was finalised during a wait")
            case .closed: throw KVFailure(.misuse, "store '\(name)' was closed by another thread during the call")
            default: break
            }
            // Another thread is installing a view (it dropped the lock to wait): stand by.
            if installer != nil && !installing { return .idle }
            try checkViewUnchanged(since: epoch)
            if !viewFrozen, try done() { return .done }
            var active = try progressRound()
            detectFailures()
            installDecidedView()
            try checkViewUnchanged(since: epoch)
            if !viewFrozen, try done() { return .done }
            if Lifecycle.serveOthers(than: self) { active = true }
            return active || bulkTransferUnderWay ? .active : .idle
        }, onTimeout: {
            KVFailure(.timedOut, "\(what()) did not complete within \(config.timeoutSeconds) s (ftkv_timeout)")
        })
    }

    /// Whether a failed member of this view is known (or the next view decided): waits of this
    /// epoch then end only with the view change.
    var viewFrozen: Bool { decidedExclusion != nil || viewChangeNeeded }

    /// A wait that began in an earlier view ends with KV_EPROCFAILED (what it waited for may
    /// involve a failed member, and its messages belonged to the old communicator). While a view
    /// is being installed, a further failure ends the installation's waits too.
    private func checkViewUnchanged(since epoch: UInt32) throws {
        if case .broken(let f) = state { throw f }
        if view.epoch != epoch {
            if installing { throw KVFailure(.procFailed, "the view changed during the installation") }
            throw viewChangeFailure()
        }
        if installing && viewChangeNeeded {
            throw KVFailure(.procFailed, "a member failed while the view was being installed")
        }
    }

    /// Waits for the reply to one request.
    func waitForReply(_ id: UInt64, what: String) throws -> Incoming {
        var reply: Incoming?
        do {
            try waitLocked(for: what) {
                reply = transport.takeReply(id)
                return reply != nil
            }
        } catch {
            transport.abandon(id)
            throw error
        }
        return reply!
    }

    /// Waits for the replies to `ids`; a reply other than OK is a failure.
    func waitForReplies(_ ids: [UInt64], what: String) throws -> [UInt64: Incoming] {
        var got: [UInt64: Incoming] = [:]
        do {
            try waitLocked(for: what) {
                for id in ids where got[id] == nil {
                    if let reply = transport.takeReply(id) { got[id] = reply }
                }
                return got.count == ids.count
            }
        } catch {
            for id in ids where got[id] == nil { transport.abandon(id) }
            throw error
        }
        return got
    }

    /// Completes a nonblocking collective with a deadline while serving (for Collectives' `wait`).
    func completeLocked(_ request: inout MPIRequest, what: String) throws {
        try waitLocked(for: what) { try Collectives.test(&request, what: what) }
    }

    /// A barrier over the store's communicator, waited for with a deadline while serving.
    func barrierLocked(what: String) throws {
        var request = try Collectives.startBarrier(transport.comm)
        try waitLocked(for: what) { try Collectives.test(&request, what: what) }
    }

    /// A barrier that also returns the sum of every rank's `count` (as barrierLocked waits).
    func countingBarrierLocked(_ count: Int, what: String) throws -> Int {
        let total = try Collectives.sum([UInt64(max(count, 0))], comm: transport.comm) { request in
            try waitLocked(for: what) { try Collectives.test(&request, what: what) }
        }
        return Int(clamping: total[0])
    }
}
