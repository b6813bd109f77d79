import Glibc

/// Starting a pthread that runs a Swift closure (the closure is retained until it returns).
enum Threads {
    static func spawn(_ what: String, _ body: @escaping () -> Void) throws -> pthread_t {
        final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }
        let context = Unmanaged.passRetained(Box(body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(context).release()
            throw KVFailure(.noMemory, "cannot start the \(what) thread (pthread_create: \(rc))")
        }
        return thread
    }
}

/// A thread that sleeps until woken, then runs `work`; wake-ups that arrive while it works fold
/// into one more run. `finish` lets it do the run it was woken for, then joins it. It makes no
/// MPI call (the persistence helpers use it at any thread level).
final class WorkerThread {
    private let mutex = FTKVLock()
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var woken = false
    private var stopping = false
    private var thread: pthread_t?

    init() { pthread_cond_init(wake, nil) }

    deinit {
        pthread_cond_destroy(wake)
        wake.deallocate()
    }

    func start(_ what: String, work: @escaping () -> Void) throws {
        thread = try Threads.spawn(what) { [self] in
            while true {
                mutex.lock()
                while !woken && !stopping { mutex.wait(on: wake) }
                let run = woken
                woken = false
                mutex.unlock()
                guard run else { return }
                work()
            }
        }
    }

    func wakeUp() {
        mutex.withLock {
            woken = true
            pthread_cond_signal(wake)
        }
    }

    func finish() {
        guard let t = thread else { return }
        mutex.withLock {
            stopping = true
            pthread_cond_signal(wake)
        }
        pthread_join(t, nil)
        thread = nil
    }
}
