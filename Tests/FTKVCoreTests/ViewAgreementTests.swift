import Testing
@testable import FTKVCore

@Suite("View agreement")
struct ViewAgreementTests {
    let view = View(epoch: 3, members: [0, 2, 3, 5, 7], nodeOfMember: [0, 0, 1, 1, 2])!

    @Test func nextViewDropsTheExcludedAndMovesOneEpochOn() {
        let next = view.excluding([3, 7])!
        #expect(next.epoch == 4)
        #expect(next.members == [0, 2, 5])
        #expect(next.nodeOfMember == [0, 0, 1])
        #expect(view.excluding(Set(view.members)) == nil)
    }

    @Test func survivorsProposeToTheLowestLiveMemberWhichDecidesWhenAllHave() {
        let failed: Set<Int32> = [5]
        var coordinator = ViewAgreement(view: view)
        #expect(coordinator.coordinator(failed) == 0)
        #expect(coordinator.proposalDue(me: 0, failed: failed) == nil) // the coordinator proposes to no one
        #expect(!coordinator.canDecide(me: 0, failed: failed))
        var member = ViewAgreement(view: view)
        #expect(member.proposalDue(me: 2, failed: failed) == 0)
        #expect(member.proposalDue(me: 2, failed: failed) == nil)   // once, unless something changes
        #expect(member.proposalDue(me: 2, failed: [5, 7]) == 0)     // more failures known: again
        coordinator.proposal(from: 2, fencesCompleted: 11)
        coordinator.proposal(from: 3, fencesCompleted: 12)
        #expect(!coordinator.canDecide(me: 0, failed: failed))      // 7 has not proposed
        #expect(coordinator.canDecide(me: 0, failed: [5, 7]))       // unless 7 failed too
        coordinator.proposal(from: 7, fencesCompleted: 11)
        coordinator.own(fencesCompleted: 11)
        #expect(coordinator.fencesCompleted == 12)   // one member completed a fence the others did not
        #expect(coordinator.canDecide(me: 0, failed: failed))
        #expect(!coordinator.canDecide(me: 2, failed: failed))      // only the coordinator decides
        #expect(coordinator.failedMembers([5, 9]) == [5])           // not a member of this view: ignored
        #expect(!ViewAgreement(view: view).canDecide(me: 0, failed: []))
    }

    @Test func aDeadCoordinatorIsReplacedByTheNextLowest() {
        var member = ViewAgreement(view: view)
        #expect(member.proposalDue(me: 3, failed: [7]) == 0)
        // The coordinator dies before deciding: proposals go to 2, which decides without 0.
        #expect(member.proposalDue(me: 3, failed: [7, 0]) == 2)
        var next = ViewAgreement(view: view)
        #expect(next.coordinator([7, 0]) == 2)
        next.proposal(from: 3, fencesCompleted: 0)
        #expect(!next.canDecide(me: 2, failed: [7, 0]))
        next.proposal(from: 5, fencesCompleted: 0)
        #expect(next.canDecide(me: 2, failed: [7, 0]))
        #expect(next.survivors([7, 0]) == [2, 3, 5])
    }
}
