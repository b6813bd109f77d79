import Glibc

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
enum CommunicatorGate {
    private static let rwlock: UnsafeMutablePointer<pthread_rwlock_t> = {
        let p = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)
        pthread_rwlock_init(p, nil)
        return p
    }()

    static func tryEnterShared() -> Bool { pthread_rwlock_tryrdlock(rwlock) == 0 }
    static func leaveShared() { pthread_rwlock_unlock(rwlock) }

    static func exclusively<T>(_ body: () throws -> T) rethrows -> T {
        pthread_rwlock_wrlock(rwlock)
        defer { pthread_rwlock_unlock(rwlock) }
        return try body()
    }
}
