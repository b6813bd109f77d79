import CMPI
import Synchronization

/// Sends this rank's heartbeats from the progress thread without the engine's lock, so a rank
/// whose application thread holds the lock for seconds (a large commit's writing, a restart's
/// loading) still tells its watcher it is alive. Fire and forget: each heartbeat is one
/// MPI_Isend of a fixed 32-byte frame whose request is freed at once; the frame is never freed
/// (a send may still read it after the store is closed), 32 bytes per store opened.
final class HeartbeatSender: @unchecked Sendable {
    private let comm: MPIComm
    private let frame: UnsafeMutableRawPointer
    private let period: UInt64
    /// The rank to send to (-1: none), set under the engine's lock when the ring changes.
    let target = Atomic<Int32>(-1)
    private let lastSent = Atomic<UInt64>(0)

    init(comm: MPIComm, header: Wire.Header, period: UInt64) throws {
        self.comm = comm
        self.period = period
        var w = try ByteWriter(reserving: Wire.headerSize)
        try Wire.write(header, to: &w)
        let message = try w.finish()
        frame = UnsafeMutableRawPointer.allocate(byteCount: Wire.headerSize, alignment: 8)
        frame.copyMemory(from: message.base, byteCount: Wire.headerSize)
    }

    /// Sends a heartbeat if one is due (any thread; at most one per period).
    func sendIfDue(now: UInt64) {
        let dest = target.load(ordering: .relaxed)
        guard dest >= 0 else { return }
        let last = lastSent.load(ordering: .relaxed)
        guard now &- last >= period,
              lastSent.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged else { return }
        var request: MPI_Request? = cmpi_request_null()
        // A failed send is the watcher's problem: it will not hear this rank.
        if MPI_Isend(frame, Int32(Wire.headerSize), cmpi_byte(), dest, Wire.requestTag, comm, &request) == MPI_SUCCESS {
            MPI_Request_free(&request)
        }
    }
}
