/// Waiting for other ranks. Every wait has a deadline (ftkv_timeout), serves incoming requests
/// while it waits (so two ranks waiting on each other both progress, whatever the thread level),
/// and drops the lock between polls so the progress thread and other threads get in.
extension Engine {
    /// Polls until `done` says so. Call with the lock held; returns with it held.
    /// While an application thread waits here it serves requests itself, so the progress thread
    /// stands aside (sleeps) rather than compete for a core (`applicationWaiters`).
    func waitLocked(for what: @autoclosure () -> String, until done: () throws -> Bool) throws {
        if try done() { return }
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
            if try done() { return .done }
            var active = try transport.progress(serve: serve)
            detectFailures()
            if try done() { return .done }
            if Lifecycle.serveOthers(than: self) { active = true }
            return active ? .active : .idle
        }, onTimeout: {
            KVFailure(.timedOut, "\(what()) did not complete within \(config.timeoutSeconds) s (ftkv_timeout)")
        })
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
}
