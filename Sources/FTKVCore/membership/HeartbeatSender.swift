import CMPI
import Synchronization

/// Sends this rank's heartbeats from the progress thread without the engine's lock, so a rank
/// whose application thread holds the lock for seconds (a large commit's writing, a restart's
/// loading) still tells its watcher it is alive. Fire and forget: each heartbeat is one
/// MPI_Isend of a fixed 32-byte frame whose request is freed at once; frames are never freed
/// (a send may still read one after the store is closed), 32 bytes per store and view.
final class HeartbeatSender: @unchecked Sendable {
    /// Where heartbeats go: the store's communicator, the frame (its header carries the epoch)
    /// and the watcher's rank in that communicator (-1: none). Replaced under the engine's lock
    /// when the ring or the view changes; a send in progress holds it meanwhile.
    struct Route {
        var comm: MPIComm
        var frame: UnsafeMutableRawPointer
        var dest: Int32 = -1
    }
    private let route: Mutex<Route>
    private let period: UInt64
    private let lastSent = Atomic<UInt64>(0)

    init(comm: MPIComm, header: Wire.Header, period: UInt64) throws {
        self.period = period
        route = Mutex(Route(comm: comm, frame: try HeartbeatSender.frame(header)))
    }

    private static func frame(_ header: Wire.Header) throws -> UnsafeMutableRawPointer {
        var w = try ByteWriter(reserving: Wire.headerSize)
        try Wire.write(header, to: &w)
        let message = try w.finish()
        let frame = UnsafeMutableRawPointer.allocate(byteCount: Wire.headerSize, alignment: 8)
        frame.copyMemory(from: message.base, byteCount: Wire.headerSize)
        return frame
    }

    /// The watcher to send to now (a rank of the current communicator; -1: none).
    func setDestination(_ dest: Int32) {
        route.withLock { $0.dest = dest }
    }

    /// After a view change: the new communicator, epoch and watcher.
    func retarget(comm: MPIComm, header: Wire.Header, dest: Int32) throws {
        let frame = try HeartbeatSender.frame(header)
        route.withLock { $0 = Route(comm: comm, frame: frame, dest: dest) }
    }

    /// Sends a heartbeat if one is due (any thread; at most one per period).
    func sendIfDue(now: UInt64) {
        let last = lastSent.load(ordering: .relaxed)
        guard now &- last >= period,
              lastSent.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        _ = route.withLockIfAvailable { r in
            guard r.dest >= 0 else { return }
            var request: MPI_Request? = cmpi_request_null()
            // A failed send is the watcher's problem: it will not hear this rank.
            if MPI_Isend(r.frame, Int32(Wire.headerSize), cmpi_byte(), r.dest, Wire.requestTag, r.comm, &request) == MPI_SUCCESS {
                MPI_Request_free(&request)
            }
        }
    }
}
