import Glibc

/// Removes old versions (StoreDirectory.collectGarbage) on a thread of its own, so a commit does
/// not wait while the file system frees the extents of a retired version's files (hundreds of
/// milliseconds for large ones). Safe beside later commits: it only removes versions older than
/// the newest `keep` complete ones, and a commit only reads (links) files of the newest.
final class BackgroundRemover {
    private let directories: [(StoreDirectory, Bool)]
    private let keep: Int
    private let mutex = FTKVLock()
    private let wake = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var requested = false
    private var stopping = false
    private var thread = pthread_t()
    private var started = false

    /// `directories`: each with whether a version there needs all its files to count (the tier).
    init(directories: [(StoreDirectory, Bool)], keep: Int) {
        self.directories = directories
        self.keep = keep
        pthread_cond_init(wake, nil)
    }

    deinit {
        pthread_cond_destroy(wake)
        wake.deallocate()
    }

    func start() throws {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<BackgroundRemover>.fromOpaque(raw!).takeRetainedValue()
            me.run()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<BackgroundRemover>.fromOpaque(context).release()
            throw KVFailure(.noMemory, "cannot start the version remover thread (pthread_create: \(rc))")
        }
        started = true
    }

    /// Asks for a pass (after a commit); passes asked for while one runs fold into one more.
    func request() {
        mutex.withLock {
            requested = true
            pthread_cond_signal(wake)
        }
    }

    /// Finishes a pass asked for, then stops the thread.
    func finish() {
        guard started else { return }
        mutex.withLock {
            stopping = true
            pthread_cond_signal(wake)
        }
        pthread_join(thread, nil)
        started = false
    }

    private func run() {
        while true {
            mutex.lock()
            while !requested && !stopping { mutex.wait(on: wake) }
            let work = requested
            requested = false
            mutex.unlock()
            if work {
                for (dir, requireAll) in directories { dir.collectGarbage(keep: keep, requireAllFiles: requireAll) }
            } else {
                return
            }
        }
    }
}
