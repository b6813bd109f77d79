/// A source of "member X is gone". The engine polls each of its detectors once per progress
/// round, after the round received what had arrived, declares what they report failed and
/// announces it to the other members (whose own detectors may not have seen it). Today's source
/// is the heartbeat ring (HeartbeatRing). One backed by ULFM, where the MPI has it, would report
/// the ranks of MPIX_Comm_failure_get_acked after MPIX_Comm_failure_ack: nothing else in the
/// engine (agreement, view change, re-replication) depends on where a failure was learnt.
public protocol FailureDetector: AnyObject {
    /// Whether this rank watches anyone with this source (false: failures reach it only as
    /// other ranks' announcements, or as deadlines on what a dead rank owes).
    var isActive: Bool { get }
    /// The members this source finds failed now, none of them in `failed` already.
    func detect(now: UInt64, failed: Set<Int32>) -> [Int32]
}
