/// Failure detection by heartbeats on a ring (the heartbeat source of "rank X is gone"): each
/// monitored member sends a heartbeat to the next monitored live member every `period` and
/// watches the previous one; silence for `suspectAfter` makes it suspect that member. One message
/// per member per period, whatever the number of ranks.
///
/// Only members with a background progress thread are monitored: below MPI_THREAD_MULTIPLE a
/// rank talks only when its application calls the library, and a rank computing for minutes must
/// not be declared dead. Pure bookkeeping (times in nanoseconds, no MPI), so it is unit-tested.
public struct HeartbeatRing: Sendable {
    public let me: Int32
    /// By rank: whether that member sends heartbeats (runs a progress thread).
    public let monitored: [Bool]
    public let period: UInt64
    public let suspectAfter: UInt64
    private(set) var watching: Int32?
    private(set) var lastHeard: UInt64 = 0
    private(set) var lastSent: UInt64 = 0

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

    /// A heartbeat (or any message) arrived from `source`.
    public mutating func heard(from source: Int32, now: UInt64) {
        if source == watching { lastHeard = now }
    }

    /// What to do now: the member to send a heartbeat to (if one is due) and the member to
    /// suspect (if the watched one has been silent too long). A new predecessor (after a failure)
    /// gets a full `suspectAfter` from now before it can be suspected.
    public mutating func due(now: UInt64, failed: Set<Int32>) -> (sendTo: Int32?, suspect: Int32?) {
        guard isActive else { return (nil, nil) }
        let previous = predecessor(failed: failed)
        if previous != watching {
            watching = previous
            lastHeard = now
        }
        var suspect: Int32?
        if let w = watching, now &- lastHeard > suspectAfter { suspect = w }
        var sendTo: Int32?
        if now &- lastSent >= period, let next = successor(failed: failed) {
            sendTo = next
            lastSent = now
        }
        return (sendTo, suspect)
    }
}
