import CMPI
import Glibc

/// The memory one nonblocking collective reads or writes until it completes: its send and
/// receive buffers, and for a communicator duplication the handle MPI fills in.
///
/// A wait may give up on a collective (a deadline, a view change), but MPI cannot cancel one: it
/// completes once the other ranks join, inside whatever MPI call this rank makes next, and
/// writes its results then. Memory on the stack or freed on the way out would be written after
/// it was reused (the stack of a later call, another allocation). So this memory is freed only
/// once the collective completed, or if it was never posted; after a wait gave up it is left
/// to MPI, a small bounded leak per abandoned collective.
final class CollectiveMemory {
    private var regions: [UnsafeMutableRawPointer] = []
    private var underWay = false

    /// `count` values of T, uninitialised (plain values only: never deinitialised).
    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<T>.stride,
                                                   alignment: max(MemoryLayout<T>.alignment, 16))
        regions.append(raw)
        return raw.bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// One value of T, set to `value`.
    func holding<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let p = allocate(T.self, count: 1)
        p.initialize(to: value)
        return p
    }

    /// Posts the collective (`post` returns MPI's code) and completes it with `wait`. If the
    /// wait throws, the collective stays under way and the memory stays allocated.
    func run(_ what: String, post: (inout MPI_Request?) -> Int32, wait: (inout MPIRequest) throws -> Void) throws {
        var request = MPIRequest(cmpi_request_null())
        try mpiCheck(post(&request.handle), what)
        underWay = true
        try wait(&request)
        underWay = false
    }

    deinit {
        guard !underWay else { return }
        for raw in regions { raw.deallocate() }
    }
}
