import Glibc

/// Which ranks have failed, as this rank knows it: found by its own failure detectors
/// (FailureDetector: the heartbeat ring) or announced by another rank's. Failed ranks stay
/// failed. A failure steers reads to live replicas, is reported by kv_failed, and starts the
/// view change (Engine+ViewChange).
extension Engine {
    /// Silence checked: part of every progress round (lock held), after the round received what
    /// had arrived. Cheap when nothing is due (a clock read and a few comparisons). Heartbeats
    /// go out from the progress thread without the lock (HeartbeatSender).
    func detectFailures() {
        let now = monotonicNanos()
        heartbeatSender?.sendIfDue(now: now)
        // Not while this rank creates communicators (a blocking call: it cannot have heard
        // anyone meanwhile). During the rest of a view change, a member that dies is found
        // like any other: before the creation it makes the survivors decide again, after it
        // the re-replication stops and the next view change follows.
        if !creatingCommunicators {
            for detector in failureDetectors where detector.isActive {
                for who in detector.detect(now: now, failed: failedRanks) { declareFailed(who, announce: true) }
            }
        }
        advanceViewChange()
    }

    /// A notice from another rank (a heartbeat, or a failure it announces).
    func noticed(_ notice: Incoming) {
        let h = notice.header
        guard h.epoch == view.epoch else {
            transport.noteDropped()
            return
        }
        switch h.kind {
        case .heartbeat:
            heartbeats.heard(from: notice.source, now: monotonicNanos())
        case .propose, .newView, .excluded, .ready:
            viewChangeNoticed(notice)
        case .failed:
            guard h.argument < UInt64(transport.idLimit) else {
                transport.noteDropped()
                return
            }
            let who = Int32(h.argument)
            // About this rank itself: another gave up on it (it was stopped or starved past the
            // suspicion time); excluding it is the view change's work, ignored until then.
            if who != rank { declareFailed(who, announce: false) }
        default:
            transport.noteDropped()
        }
    }

    /// Records `who` as failed; the rank that suspected it tells every other live member.
    /// With ftkv_on_failure=abort, the announcement goes out and then the job is ended.
    func declareFailed(_ who: Int32, announce: Bool) {
        guard who != rank, who >= 0, who < transport.idLimit, failedRanks.insert(who).inserted else { return }
        heartbeatSender?.setDestination(heartbeats.successor(failed: failedRanks).flatMap(transport.commRank(of:)) ?? -1)
        if announce {
            for other in view.members where other != rank && other != who && !failedRanks.contains(other) {
                try? transport.sendNotice(.failed, argument: UInt64(who), to: other)
            }
        }
        abortJobIfAsked(because: who)
    }

    /// ftkv_on_failure=abort: ends the whole job (MPI_Abort on MPI_COMM_WORLD), naming the dead
    /// rank, so that a batch script can restart it from its last commit. Every rank that learns
    /// of a failure does it (the detector after telling the others), so the first one ends it.
    private func abortJobIfAsked(because who: Int32) {
        guard config.abortOnFailure, view.contains(who) else { return }
        fputs("ftkv: store '\(name)': rank \(who) failed (no heartbeat for \(config.suspectAfterSeconds) s); "
              + "ftkv_on_failure=abort: ending the job (rank \(rank) calls MPI_Abort)\n", stderr)
        Collectives.abortJob(code: 75)
    }

    /// The first replica of a key that has not failed (nil: all have).
    @inline(__always)
    func liveReplica(_ set: ArraySlice<Int32>) -> Int32? {
        failedRanks.isEmpty ? set.first : set.first { !failedRanks.contains($0) }
    }

    /// Whether any member has failed, without reporting a view change (a server's own check).
    var hasFailedMembers: Bool { lock.withLock { !failedRanks.isEmpty } }

    /// kv_failed: the failed ranks this rank knows of, ascending.
    public func failed() throws -> [Int32] {
        try lock.withLock {
            try checkUsable()
            serveWaitingRequests()
            return failedRanks.sorted()
        }
    }
}
