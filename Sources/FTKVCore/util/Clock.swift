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
/// After `sleepsBeforeRest` sleeps it rests longer, if `restMicros` is given, and after a further
/// `restsBeforeLongRest` rests, `longRestMicros`: an idle progress thread wakes ~40 times a second
/// after 2 s of idleness (each wake-up costs 40-80 us of CPU on this VM, nearly all of an idle
/// store's CPU: docs/progress.md).
struct Backoff {
    private var idleRounds = 0
    private let spinRounds: Int
    private let maxSleepNanos: Int
    private let restNanos: Int

    private let yieldWhileSpinning: Bool
    private let sleepsBeforeRest: Int
    private let restsBeforeLongRest: Int
    private let longRestNanos: Int

    init(spinRounds: Int = 2000, maxSleepMicros: Int = 1000, restMicros: Int? = nil, yieldWhileSpinning: Bool = true,
         sleepsBeforeRest: Int = 200, restsBeforeLongRest: Int = Int.max / 2, longRestMicros: Int? = nil) {
        self.spinRounds = spinRounds
        self.yieldWhileSpinning = yieldWhileSpinning
        self.maxSleepNanos = maxSleepMicros * 1000
        self.restNanos = (restMicros ?? maxSleepMicros) * 1000
        self.sleepsBeforeRest = sleepsBeforeRest
        self.restsBeforeLongRest = restsBeforeLongRest
        self.longRestNanos = (longRestMicros ?? restMicros ?? maxSleepMicros) * 1000
    }

    mutating func reset() { idleRounds = 0 }

    mutating func pause() {
        idleRounds += 1
        if idleRounds <= spinRounds {
            if yieldWhileSpinning { sched_yield() }
            return
        }
        let step = idleRounds - spinRounds
        let ns = step > sleepsBeforeRest + restsBeforeLongRest ? longRestNanos
            : step > sleepsBeforeRest ? restNanos : min(maxSleepNanos, 10_000 << min(step, 10))
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
