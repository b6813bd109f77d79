import CMPI

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
        let deadline = Deadline(seconds: config.timeoutSeconds)
        var backoff = Backoff()
        while true {
            if try done() { return }
            var active = try transport.progress(serve: serve)
            if try done() { return }
            if Lifecycle.serveOthers(than: self) { active = true }
            if deadline.hasPassed {
                throw KVFailure(.timedOut, "\(what()) did not complete within \(config.timeoutSeconds) s (ftkv_timeout)")
            }
            if active { backoff.reset() }
            lock.unlock()
            backoff.pause()
            lock.lock()
            // Another thread may have closed the store (or MPI) while the lock was dropped: its
            // communicator may be gone, so no MPI call on it from here.
            switch state {
            case .finalized: throw KVFailure(.misuse, "MPI was finalised during a wait")
            case .closed: throw KVFailure(.misuse, "store '\(name)' was closed by another thread during the call")
            default: break
            }
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

    /// Completes a nonblocking collective (MPI_Ibarrier, MPI_Iallgather...) with a deadline.
    func waitCollectiveLocked(_ request: inout MPI_Request?, what: String) throws {
        var req = request
        try waitLocked(for: what) {
            var flag: Int32 = 0
            try mpiCheck(MPI_Test(&req, &flag, cmpi_status_ignore()), "MPI_Test of \(what)")
            return flag != 0
        }
        request = req
    }

    /// Every rank's earlier writes are applied at their replicas once this returns on any rank.
    func barrierLocked(what: String) throws {
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Ibarrier(transport.comm, &request), "MPI_Ibarrier")
        try waitCollectiveLocked(&request, what: what)
    }
}

/// A collective wait before an engine exists (kv_open): polls MPI_Test with a deadline and backoff.
func waitForCollective(_ request: inout MPI_Request?, seconds: Double, what: String) throws {
    let deadline = Deadline(seconds: seconds)
    var backoff = Backoff()
    while true {
        var flag: Int32 = 0
        try mpiCheck(MPI_Test(&request, &flag, cmpi_status_ignore()), "MPI_Test of \(what)")
        if flag != 0 { return }
        if deadline.hasPassed {
            throw KVFailure(.timedOut, "\(what) did not complete within \(seconds) s: are all ranks calling kv_open?")
        }
        backoff.pause()
    }
}
