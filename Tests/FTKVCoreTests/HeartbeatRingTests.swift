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

    @Test func sendsEveryPeriodAndSuspectsAfterSilence() {
        var ring = HeartbeatRing(me: 1, monitored: [true, true, true], period: 100 * ms, suspectAfter: 1000 * ms)
        var t: UInt64 = 10_000 * ms
        var sends = 0
        var lastHeard = t
        // 2 s with the predecessor (0) heard every 100 ms: no suspicion, a send per period.
        for step in 0..<200 {
            let (to, suspect) = ring.due(now: t, failed: [])
            if let to { #expect(to == 2); sends += 1 }
            #expect(suspect == nil)
            if step % 10 == 0 {
                ring.heard(from: 0, now: t)
                lastHeard = t
            }
            ring.heard(from: 2, now: t) // the successor's messages do not feed the watch
            t += 10 * ms
        }
        #expect(sends == 20)
        // Silence from 0: suspected once more than 1 s has passed since it was last heard.
        var suspectedAt: UInt64?
        while suspectedAt == nil && t < lastHeard + 3000 * ms {
            if ring.due(now: t, failed: []).suspect == 0 { suspectedAt = t }
            t += 10 * ms
        }
        #expect(suspectedAt != nil && suspectedAt! > lastHeard + 1000 * ms && suspectedAt! <= lastHeard + 1020 * ms)
        // Once 0 is failed the watch moves to 2 (the ring wraps) with a fresh grace period.
        let now = t
        #expect(ring.due(now: now, failed: [0]).suspect == nil)
        #expect(ring.due(now: now + 900 * ms, failed: [0]).suspect == nil)
        #expect(ring.due(now: now + 1100 * ms, failed: [0]).suspect == 2)
    }
}
