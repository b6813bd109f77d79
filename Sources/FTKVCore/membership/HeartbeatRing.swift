/// Failure detection by heartbeats on a ring (the heartbeat source of "rank X is gone"): each
/// monitored member sends a heartbeat to the next monitored live member every `period` (see
/// HeartbeatSender) and watches the previous one; silence for `suspectAfter` makes it suspect
/// that member. One message per member per period, whatever the number of ranks.
///
/// Only members with a background progress thread are monitored: below MPI_THREAD_MULTIPLE a
/// rank talks only when its application calls the library, and a rank computing for minutes must
/// not be declared dead. Pure bookkeeping (times in nanoseconds, no MPI), so it is unit-tested.
/// A class: the engine polls it as its failure detector and feeds it the heartbeats it receives.
public final class HeartbeatRing: FailureDetector {
    public let me: Int32
    /// By rank: whether that member sends heartbeats (runs a progress thread).
    public let monitored: [Bool]
    public let period: UInt64
    public let suspectAfter: UInt64
    private(set) var watching: Int32?
    private(set) var lastHeard: UInt64 = 0
    private(set) var lastChecked: UInt64 = 0

    public init(me: Int32, monitored: [Bool], period: UInt64, suspectAfter: UInt64) {
        self.me = me
        self.monitored = monitored
        self.period = period
        self.suspectAfter = suspectAfter
    }

    /// Whether this member takes part (sends and watches).
    public var isActive: Bool { period > 0 && Int(me) < monitored.count && monitored[Int(me)] }

    /// The next monitored live member after this one (wrapping); nil when alone.
    public func successor(failed: Set<Int32>) -> Int32? { neighbour(step: 1, failed: failed) }

    /// The previous monitored live member; nil when alone.
    public func predecessor(failed: Set<Int32>) -> Int32? { neighbour(step: -1, failed: failed) }

    private func neighbour(step: Int, failed: Set<Int32>) -> Int32? {
        let n = monitored.count
        guard n > 1 else { return nil }
        var r = Int(me)
        for _ in 1..<n {
            r = (r + step + n) % n
            if monitored[r] && !failed.contains(Int32(r)) { return Int32(r) }
        }
        return nil
    }

    /// A heartbeat arrived from `source`.
    public func heard(from source: Int32, now: UInt64) {
        if source == watching { lastHeard = now }
    }

    /// The member to suspect now, if the watched one has been silent too long. Call after the
    /// messages that arrived have been received. A new predecessor (after a failure) gets a full
    /// `suspectAfter` from now; so does the watched one after this member was not looking (no
    /// check for over half the suspicion time: it was busy, and cannot judge that silence).
    public func suspect(now: UInt64, failed: Set<Int32>) -> Int32? {
        guard isActive else { return nil }
        let previous = predecessor(failed: failed)
        let wasAway = lastChecked != 0 && now &- lastChecked > suspectAfter / 2
        lastChecked = now
        if previous != watching || wasAway {
            watching = previous
            lastHeard = max(lastHeard, now)
            return nil
        }
        guard let w = watching, now &- lastHeard > suspectAfter else { return nil }
        return w
    }

    /// FailureDetector: the watched member, once silent too long.
    public func detect(now: UInt64, failed: Set<Int32>) -> [Int32] {
        suspect(now: now, failed: failed).map { [$0] } ?? []
    }
}
