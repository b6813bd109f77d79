import Testing
@testable import FTKVCore
#if canImport(Glibc)
import Glibc
#endif

@Suite("Deadline and Backoff")
struct ClockTests {
    @Test("monotonicNanos does not go backwards and tracks a sleep")
    func monotonic() {
        var last = monotonicNanos()
        for _ in 0..<1000 {
            let now = monotonicNanos()
            #expect(now >= last)
            last = now
        }
        let before = monotonicNanos()
        usleep(20_000)
        #expect(monotonicNanos() - before >= 20_000_000)
    }

    @Test("Deadline(seconds: 0.05) passes after ~50 ms, not immediately")
    func deadline() {
        let start = monotonicNanos()
        let d = Deadline(seconds: 0.05)
        #expect(!d.hasPassed)
        #expect(d.atNanos >= start + 50_000_000 && d.atNanos <= monotonicNanos() + 50_000_000)
        while !d.hasPassed { usleep(1000) }
        let elapsed = monotonicNanos() - start
        #expect(elapsed >= 50_000_000, "passed after \(elapsed) ns")
        #expect(elapsed < 2_000_000_000, "took \(elapsed) ns")
        #expect(d.hasPassed, "stays passed")
    }

    @Test("zero, negative and huge deadlines")
    func extremes() {
        #expect(Deadline(seconds: 0).hasPassed)
        #expect(Deadline(seconds: -5).hasPassed)
        #expect(Deadline(seconds: -.infinity).hasPassed)
        for s in [1e6, 1e30, Double.infinity, Double.greatestFiniteMagnitude] {
            let d = Deadline(seconds: s)
            #expect(!d.hasPassed, "\(s)")
            // Clamped, not wrapped around to the past.
            #expect(d.atNanos > monotonicNanos() + 999_000 * 1_000_000_000, "\(s)")
        }
    }

    @Test("Backoff spins first, then sleeps in growing steps; reset spins again")
    func backoff() {
        func timed(_ body: () -> Void) -> UInt64 {
            let t = monotonicNanos()
            body()
            return monotonicNanos() - t
        }
        // Sleeps are 10 us << step, capped at maxSleep: step 10 and later sleep >= 5 ms here.
        var b = Backoff(spinRounds: 3, maxSleepMicros: 5000)
        var spinTotal: UInt64 = 0
        for _ in 0..<3 { spinTotal += timed { b.pause() } }
        #expect(spinTotal < 1_000_000_000)
        var sleeps: [UInt64] = []
        for _ in 0..<12 { sleeps.append(timed { b.pause() }) }
        #expect(sleeps[0] >= 20_000, "first sleep step is 20 us: \(sleeps)")
        #expect(sleeps[3] >= 160_000, "fourth sleep step is 160 us: \(sleeps)")
        #expect(sleeps[9...].allSatisfy { $0 >= 5_000_000 }, "capped steps sleep maxSleep: \(sleeps)")
        // After reset the next pause is a spin again, not a 5 ms sleep. Best of ten, and any pause
        // shorter than the 5 ms sleep counts: other suites run in parallel and load the cores.
        var best = UInt64.max
        for _ in 0..<10 {
            b.reset()
            best = min(best, timed { b.pause() })
            for _ in 0..<14 { b.pause() }
        }
        #expect(best < 5_000_000, "after reset a pause took \(best) ns")

        // The cap applies below 10.24 ms too.
        var capped = Backoff(spinRounds: 0, maxSleepMicros: 100)
        for _ in 0..<8 { capped.pause() }
        var best2 = UInt64.max
        for _ in 0..<10 { best2 = min(best2, timed { capped.pause() }) }
        #expect(best2 >= 100_000 && best2 < 5_000_000, "capped at 100 us: \(best2) ns")
    }

    @Test("Backoff rests after its short sleeps, then rests longer (an idle progress thread)")
    func rests() {
        func timed(_ b: inout Backoff) -> UInt64 {
            let t = monotonicNanos()
            b.pause()
            return monotonicNanos() - t
        }
        var b = Backoff(spinRounds: 0, maxSleepMicros: 100, restMicros: 3000, sleepsBeforeRest: 2,
                        restsBeforeLongRest: 2, longRestMicros: 12_000)
        let steps = (0..<6).map { _ in timed(&b) }
        // Lower bounds only: a loaded machine makes sleeps longer, never shorter.
        #expect(steps[0] >= 20_000 && steps[1] >= 40_000, "short sleeps first: \(steps)")
        #expect(steps[2] >= 3_000_000 && steps[3] >= 3_000_000, "then rests of 3 ms: \(steps)")
        #expect(steps[4] >= 12_000_000 && steps[5] >= 12_000_000, "then long rests of 12 ms: \(steps)")
        // The short sleeps stay short: the best of the first two is far below a rest.
        #expect(min(steps[0], steps[1]) < 3_000_000, "short sleeps: \(steps)")
        var fresh = Backoff(spinRounds: 0, maxSleepMicros: 100, restMicros: 3000, sleepsBeforeRest: 2)
        for _ in 0..<4 { fresh.pause() }
        #expect(timed(&fresh) >= 3_000_000, "without a long rest, rests stay 3 ms")
    }
}
