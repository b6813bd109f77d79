import Glibc
import Synchronization

/// Serves remote requests while the application computes (only under MPI_THREAD_MULTIPLE).
/// It spins briefly after activity, for latency, then sleeps in growing steps up to 1 ms, 10 ms
/// after about 0.15 s of idleness and 25 ms after 2 s more, so an idle store costs well under 1% of
/// a core (ftkv bench measures it beside an MPI process with no store open, and the first get
/// after the owner idled, the price of those rests).
///
/// Its spin (200 rounds, about 0.2 ms) yields the core between rounds only when the node has
/// more ranks than cores. Otherwise it does not: an application thread busy-polling in its own
/// MPI call (Open MPI's blocking calls spin) took the core back at every yield, and the other
/// rank's gets of its keys ran at 9 k/s instead of 113-124 k/s (docs/progress.md).
final class ProgressThread {
    private var thread = pthread_t()
    private let stopping = Atomic<Bool>(false)
    private let step: () -> Step

    enum Step {
        case active      // served something: stay hot
        case idle        // nothing to do: back off
        case standAside  // an application thread is serving: sleep briefly, stay ready
    }

    private let spinsWithoutYielding: Bool

    /// `step` makes one round of progress and says what happened.
    init(spinsWithoutYielding: Bool, step: @escaping () -> Step) {
        self.spinsWithoutYielding = spinsWithoutYielding
        self.step = step
    }

    /// Standing aside sleeps 50 us at first, then twice as long each time, up to 1 ms: ready to
    /// take over soon after a short wait, yet not waking 20,000 times a second through a long
    /// one (64 ranks on 2 cores spent most of their time in those wake-ups).
    static let firstAsideNanos = 50_000
    static let longestAsideNanos = 1_000_000

    func start() throws {
        thread = try Threads.spawn("progress") { [self] in run() }
    }

    private func run() {
        var backoff = Backoff(spinRounds: 200, maxSleepMicros: 1000, restMicros: 10_000, yieldWhileSpinning: !spinsWithoutYielding,
                              sleepsBeforeRest: 150, restsBeforeLongRest: 200, longRestMicros: 25_000)
        var asideNanos = ProgressThread.firstAsideNanos
        while !stopping.load(ordering: .acquiring) {
            let now = step()
            if now != .standAside { asideNanos = ProgressThread.firstAsideNanos }
            switch now {
            case .active: backoff.reset()
            case .idle: backoff.pause()
            case .standAside:
                backoff.reset()
                var ts = timespec(tv_sec: 0, tv_nsec: asideNanos)
                nanosleep(&ts, nil)
                asideNanos = min(2 * asideNanos, ProgressThread.longestAsideNanos)
            }
        }
    }

    /// Asks the thread to stop and waits for it.
    func stop() {
        stopping.store(true, ordering: .releasing)
        pthread_join(thread, nil)
    }
}
