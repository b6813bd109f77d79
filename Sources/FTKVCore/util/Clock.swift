import Glibc

/// Monotonic time in nanoseconds.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// A point in time after which a wait gives up. Every wait on another rank has one.
struct Deadline {
    let atNanos: UInt64

    init(seconds: Double) {
        let ns = seconds.isNaN || seconds <= 0 ? 0 : min(seconds * 1e9, Double(UInt64.max / 4))
        atNanos = monotonicNanos() &+ UInt64(ns)
    }

    var hasPassed: Bool { monotonicNanos() >= atNanos }
}

/// Waiting politely: spin right after activity (latency), with sched_yield between rounds unless
/// `yieldWhileSpinning` is false (a progress thread with a core to share: ProgressThread), then
/// sleep in growing steps so an idle waiter does not burn a core (Open MPI's own blocking calls
/// would busy-poll).
/// After about two hundred sleeps (0.2 s or more of idleness) it rests longer, if `restMicros` is
/// given: an idle progress thread then wakes ~100 times a second (each wake-up costs tens of
/// microseconds of context switching, most of an idle store's CPU).
struct Backoff {
    private var idleRounds = 0
    private let spinRounds: Int
    private let maxSleepNanos: Int
    private let restNanos: Int

    private let yieldWhileSpinning: Bool

    init(spinRounds: Int = 2000, maxSleepMicros: Int = 1000, restMicros: Int? = nil, yieldWhileSpinning: Bool = true) {
        self.spinRounds = spinRounds
        self.yieldWhileSpinning = yieldWhileSpinning
        self.maxSleepNanos = maxSleepMicros * 1000
        self.restNanos = (restMicros ?? maxSleepMicros) * 1000
    }

    mutating func reset() { idleRounds = 0 }

    mutating func pause() {
        idleRounds += 1
        if idleRounds <= spinRounds {
            if yieldWhileSpinning { sched_yield() }
            return
        }
        let step = idleRounds - spinRounds
        let ns = step > 200 ? restNanos : min(maxSleepNanos, 10_000 << min(step, 10))
        var ts = timespec(tv_sec: 0, tv_nsec: ns)
        nanosleep(&ts, nil)
    }
}

/// The one polling loop behind every wait with a deadline: runs `round` until it reports done,
/// pausing between rounds with a backoff that restarts after an active round.
enum Polling {
    enum Round { case done, active, idle }

    static func until(seconds: Double, pause: (inout Backoff) -> Void = { $0.pause() },
                      _ round: () throws -> Round, onTimeout: () -> KVFailure) throws {
        let deadline = Deadline(seconds: seconds)
        var backoff = Backoff()
        while true {
            switch try round() {
            case .done: return
            case .active: backoff.reset()
            case .idle: break
            }
            if deadline.hasPassed { throw onTimeout() }
            pause(&backoff)
        }
    }
}
