/// The survivors' agreement on the next view after failures, as pure bookkeeping (no MPI, so it
/// is unit-tested). Every survivor sends the failed members it knows of to the coordinator, the
/// lowest member it believes alive; a proposal's failed members join the receiver's own (so a
/// member that learns the coordinator died proposes to the next one, which learns it too). The
/// coordinator decides once every member it believes alive has proposed: the next view is this
/// one without the failed members, announced to the survivors (and the excluded told so).
/// A coordinator that dies first is suspected like any member, and the next one decides.
///
/// Proposals also carry how many fences the sender completed. A barrier a dying member had
/// entered can complete on some survivors and not on others; the decision carries the highest
/// count, and a survivor still waiting in that fence's final barrier counts it complete (every
/// member had entered it, so every write of that fence was acknowledged): no survivor then runs
/// one fence more than another.
public struct ViewAgreement: Sendable {
    public let view: View
    /// Members that sent a proposal in this view's epoch.
    public private(set) var proposed = Set<Int32>()
    /// The highest count of completed fences proposed (this member's own included by the caller).
    public private(set) var fencesCompleted: UInt64 = 0
    /// Where this member last proposed, and which failed members it named.
    private var lastProposal: (to: Int32, failed: [Int32])?

    public init(view: View) { self.view = view }

    /// The view's members that have failed, ascending.
    public func failedMembers(_ failed: Set<Int32>) -> [Int32] { view.members.filter { failed.contains($0) } }

    /// The view's members believed alive, ascending.
    public func survivors(_ failed: Set<Int32>) -> [Int32] { view.members.filter { !failed.contains($0) } }

    /// The lowest member believed alive.
    public func coordinator(_ failed: Set<Int32>) -> Int32? { view.members.first { !failed.contains($0) } }

    public mutating func proposal(from member: Int32, fencesCompleted count: UInt64) {
        proposed.insert(member)
        fencesCompleted = max(fencesCompleted, count)
    }

    /// This member's own count (the coordinator's, which sends no proposal).
    public mutating func own(fencesCompleted count: UInt64) { fencesCompleted = max(fencesCompleted, count) }

    /// Whether `me`, as coordinator, may decide: a member failed, and every survivor proposed.
    public func canDecide(me: Int32, failed: Set<Int32>) -> Bool {
        guard coordinator(failed) == me, !failedMembers(failed).isEmpty else { return false }
        return survivors(failed).allSatisfy { $0 == me || proposed.contains($0) }
    }

    /// The coordinator `me` must (re)send its proposal to: a new coordinator, or more failed
    /// members known since the last proposal. Nil: nothing to send. Records the proposal.
    public mutating func proposalDue(me: Int32, failed: Set<Int32>) -> Int32? {
        let known = failedMembers(failed)
        guard !known.isEmpty, let c = coordinator(failed), c != me else { return nil }
        if let last = lastProposal, last.to == c, last.failed == known { return nil }
        lastProposal = (c, known)
        return c
    }
}

extension View {
    /// The next view: these members without `excluded`, one epoch on. Nil if nobody is left.
    public func excluding(_ excluded: Set<Int32>) -> View? {
        let keep = members.indices.filter { !excluded.contains(members[$0]) }
        guard !keep.isEmpty else { return nil }
        return View(epoch: epoch &+ 1, members: keep.map { members[$0] }, nodeOfMember: keep.map { nodeOfMember[$0] })
    }

    public func contains(_ member: Int32) -> Bool { members.contains(member) }
}
