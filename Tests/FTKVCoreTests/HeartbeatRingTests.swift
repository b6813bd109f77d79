import Testing
@testable import FTKVCore

@Suite("Heartbeat ring")
struct HeartbeatRingTests {
    let ms: UInt64 = 1_000_000

    @Test func neighboursSkipUnmonitoredAndFailedRanks() {
        let ring = HeartbeatRing(me: 2, monitored: [true, false, true, true, false, true], period: 100 * ms, suspectAfter: 1000 * ms)
        #expect(ring.isActive)
        #expect(ring.successor(failed: []) == 3)
        #expect(ring.predecessor(failed: []) == 0)
        #expect(ring.successor(failed: [3]) == 5)
        #expect(ring.predecessor(failed: [0]) == 5)
        #expect(ring.successor(failed: [0, 3, 5]) == nil)
        let passive = HeartbeatRing(me: 1, monitored: [true, false, true], period: 100 * ms, suspectAfter: 1000 * ms)
        #expect(!passive.isActive)
        let off = HeartbeatRing(me: 0, monitored: [true, true], period: 0, suspectAfter: 1000 * ms)
        #expect(!off.isActive)
    }

    @Test func suspectsAfterSilenceButNotAfterBeingAway() {
        let ring = HeartbeatRing(me: 1, monitored: [true, true, true], period: 100 * ms, suspectAfter: 1000 * ms)
        var t: UInt64 = 10_000 * ms
        var lastHeard = t
        // 2 s with the predecessor (0) heard every 100 ms, checked every 10 ms: no suspicion.
        for step in 0..<200 {
            if step % 10 == 0 {
                ring.heard(from: 0, now: t)
                lastHeard = t
            }
            ring.heard(from: 2, now: t) // the successor's messages do not feed the watch
            #expect(ring.suspect(now: t, failed: []) == nil)
            t += 10 * ms
        }
        // Silence from 0: suspected once more than 1 s has passed since it was last heard.
        var suspectedAt: UInt64?
        while suspectedAt == nil && t < lastHeard + 3000 * ms {
            if ring.suspect(now: t, failed: []) == 0 { suspectedAt = t }
            t += 10 * ms
        }
        #expect(suspectedAt != nil && suspectedAt! > lastHeard + 1000 * ms && suspectedAt! <= lastHeard + 1020 * ms)
        // Once 0 is failed the watch moves to 2 (the ring wraps) with a fresh grace period.
        let now = t
        #expect(ring.suspect(now: now, failed: [0]) == nil)
        #expect(ring.suspect(now: now + 400 * ms, failed: [0]) == nil)
        #expect(ring.suspect(now: now + 800 * ms, failed: [0]) == nil)
        #expect(ring.suspect(now: now + 1100 * ms, failed: [0]) == 2)
    }

    @Test func aRankThatWasBusyDoesNotJudgeTheSilence() {
        let ring = HeartbeatRing(me: 1, monitored: [true, true], period: 100 * ms, suspectAfter: 1000 * ms)
        var t: UInt64 = 5_000 * ms
        ring.heard(from: 0, now: t)
        #expect(ring.suspect(now: t, failed: []) == nil)
        ring.heard(from: 0, now: t)
        // This rank did not look for 3 s (its application held the lock): a fresh grace period.
        t += 3000 * ms
        #expect(ring.suspect(now: t, failed: []) == nil)
        #expect(ring.suspect(now: t + 400 * ms, failed: []) == nil)
        // But continued silence while it looks is suspicion.
        var u = t + 400 * ms
        var suspected = false
        while u < t + 1500 * ms && !suspected {
            u += 100 * ms
            suspected = ring.suspect(now: u, failed: []) == 0
        }
        #expect(suspected && u > t + 1000 * ms)
    }

    @Test func asAFailureDetectorItReportsTheSilentPredecessorOnce() {
        let ring = HeartbeatRing(me: 1, monitored: [true, true, true], period: 100 * ms, suspectAfter: 1000 * ms)
        let detector: any FailureDetector = ring
        #expect(detector.isActive)
        var t: UInt64 = 1_000 * ms
        #expect(detector.detect(now: t, failed: []).isEmpty)
        ring.heard(from: 0, now: t)
        t += 1100 * ms
        // Checked every 100 ms meanwhile (not away): rank 0 has been silent for more than 1 s.
        var found: [Int32] = []
        for step in 1...11 { found = detector.detect(now: t - 1100 * ms + UInt64(step) * 100 * ms, failed: []) }
        #expect(found == [0])
        // Once declared failed, the watch moves on to rank 2 with a fresh grace period.
        #expect(detector.detect(now: t + 10 * ms, failed: [0]).isEmpty)
        let idle = HeartbeatRing(me: 0, monitored: [true, true], period: 0, suspectAfter: 1000 * ms)
        #expect(!(idle as any FailureDetector).isActive)
    }
}
