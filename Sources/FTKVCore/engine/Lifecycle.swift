import Synchronization

/// Open engines of this process, and the hook that runs when the application calls MPI_Finalize
/// (an attribute on MPI_COMM_SELF is deleted first thing in MPI_Finalize): it stops every progress
/// thread before MPI goes away, and marks every engine finalised so later calls return KV_EMISUSE
/// instead of calling into a finalised MPI.
enum Lifecycle {
    private static let lock = FTKVLock()
    private static var hookInstalled = false
    private static var engines: [ObjectIdentifier: Engine] = [:]

    static func installFinalizeHook() throws {
        try lock.withLock {
            guard !hookInstalled else { return }
            try Collectives.onFinalize { Lifecycle.mpiFinalizing() }
            hookInstalled = true
        }
    }

    /// True while more than one store is open (checked without the lock on every wait poll).
    private static let several = Atomic<Bool>(false)

    static func register(_ engine: Engine) {
        lock.withLock {
            engines[ObjectIdentifier(engine)] = engine
            several.store(engines.count > 1, ordering: .relaxed)
        }
    }

    static func unregister(_ engine: Engine) {
        lock.withLock {
            _ = engines.removeValue(forKey: ObjectIdentifier(engine))
            several.store(engines.count > 1, ordering: .relaxed)
        }
    }

    /// A wait loop of one store also serves the other open stores of this process that have no
    /// progress thread: below MPI_THREAD_MULTIPLE, a rank waiting in store A's fence must still
    /// answer requests for store B (the header promises service inside any libftkv call).
    /// Other engines are only try-locked, so this never blocks or deadlocks.
    static func serveOthers(than engine: Engine) -> Bool {
        guard several.load(ordering: .relaxed) else { return false }
        return serveEach(except: engine)
    }

    /// A thread waiting for a collective on another communicator (kv_open's duplication and
    /// allgather, kv_connect's) serves the open stores in the meantime: the ranks it waits for
    /// may be waiting in one of those stores for an answer from this rank (a job that opens a
    /// second store while reading from the first), and their progress threads are kept out
    /// while the waiting thread holds the communicator gate. Only try-locks: never blocks.
    static func serveWhileWaitingOnCollective() -> Bool { serveEach(except: nil) }

    /// One round of Engine.serveForAnotherWait on every open engine but `skipped`.
    private static func serveEach(except skipped: Engine?) -> Bool {
        lock.withLock {
            var active = false
            for engine in engines.values where engine !== skipped && engine.serveForAnotherWait() { active = true }
            return active
        }
    }

    static func mpiFinalizing() {
        let open = lock.withLock { () -> [Engine] in
            let list = Array(engines.values)
            engines.removeAll()
            several.store(false, ordering: .relaxed)
            return list
        }
        for engine in open { engine.mpiFinalizing() }
    }
}
