import Glibc
import Synchronization

/// A pthread mutex: the engine needs try-lock for its progress thread and explicit unlock/relock
/// inside wait loops, which closure-scoped locks do not give.
public final class FTKVLock {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }
    @inline(__always) public func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }
    /// Waits on `condition` (the lock held; held again on return).
    public func wait(on condition: UnsafeMutablePointer<pthread_cond_t>) { pthread_cond_wait(condition, mutex) }

    @inline(__always)
    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Progress threads probe their communicators while holding this gate shared; creating or freeing
/// a communicator holds it exclusively, because a communicator duplication racing a probe in
/// another thread has open hang reports in Open MPI (see NOTES-swift-mpi.md).
/// The thread holding it exclusively may enter it again (shared or exclusively): while it waits
/// for a collective creation it serves the open stores itself, since their progress threads
/// cannot (Collectives.wait), and a store waiting on this rank would otherwise wait for ever.
enum CommunicatorGate {
    private static let rwlock: UnsafeMutablePointer<pthread_rwlock_t> = {
        let p = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
        pthread_rwlock_init(p, nil)
        return p
    }()
    /// The thread holding the gate exclusively (0: none).
    private static let owner = Atomic<UInt>(0)

    static var heldExclusivelyHere: Bool { owner.load(ordering: .acquiring) == UInt(pthread_self()) }

    /// Runs `body` inside the gate shared, or returns nil at once if a creation holds it.
    static func ifShared<T>(_ body: () -> T) -> T? {
        if heldExclusivelyHere { return body() }
        guard pthread_rwlock_tryrdlock(rwlock) == 0 else { return nil }
        defer { pthread_rwlock_unlock(rwlock) }
        return body()
    }

    static func exclusively<T>(_ body: () throws -> T) rethrows -> T {
        if heldExclusivelyHere { return try body() }
        pthread_rwlock_wrlock(rwlock)
        owner.store(UInt(pthread_self()), ordering: .releasing)
        defer {
            owner.store(0, ordering: .releasing)
            pthread_rwlock_unlock(rwlock)
        }
        return try body()
    }
}
