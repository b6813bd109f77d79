import CMPI
import Glibc

/// Whole records streamed between the members of a communicator: a view change's
/// re-replication. Each sender packs spans of its table's arena into pooled buffers (one copy,
/// into memory that is already resident) and sends them; each receiver has MPI write them
/// straight into its table's free tail (RecordTable+Transfer.swift), with no receive buffers and
/// no copy afterwards. The communicator is this transfer's own: the store's transport probes
/// every tag of its communicator and would take these messages.
///
/// The byte stream from one rank to another is cut into messages of exactly `chunk` bytes (the
/// last one shorter) at any byte, records straddling them: the receiver, told the stream's length
/// beforehand (`exchangeSizes`), posts receives of the same sizes at the running offset.
final class RecordTransfer {
    private let comm: MPIComm
    private let size: Int
    private let me: Int
    private let chunk: Int
    private let pool: BatchBufferPool
    /// Send buffers in flight at most (the fence's window: 8 x 4 MiB).
    private let window: Int
    /// Receives posted at once per source (into the table: no memory beyond it).
    private static let receivesPerSource = 8
    static let tag: Int32 = 1

    private var spans: [[(offset: Int, bytes: Int)]]
    /// Bytes this rank sends to each rank, and receives from each.
    private(set) var outgoingBytes: [Int]
    private var incomingBytes: [Int]
    private var incomingStart: [Int]
    private var posted: [Int]
    private var postedCount: [Int]
    private var cursor: [(span: Int, within: Int, sent: Int)]
    private var sends: [(request: MPI_Request?, buffer: UnsafeMutableRawPointer)] = []
    private var receives: [(request: MPI_Request?, source: Int)] = []
    private var space: UnsafeMutableRawPointer?
    private var nextDestination = 0
    /// Spans packed whole so far (a test fault dies after some).
    private(set) var packedSpans = 0

    init(comm: MPIComm, size: Int, me: Int, pool: BatchBufferPool, chunk: Int, windowBuffers: Int = 8) {
        self.comm = comm
        self.size = size
        self.me = me
        self.pool = pool
        self.chunk = max(1, min(chunk, pool.bufferBytes))
        self.window = windowBuffers
        spans = Array(repeating: [], count: size)
        outgoingBytes = Array(repeating: 0, count: size)
        incomingBytes = Array(repeating: 0, count: size)
        incomingStart = Array(repeating: 0, count: size)
        posted = Array(repeating: 0, count: size)
        postedCount = Array(repeating: 0, count: size)
        cursor = Array(repeating: (0, 0, 0), count: size)
    }

    /// Queues `bytes` of the sender's arena from `offset` (one record) for rank `dest`.
    func add(offset: Int, bytes: Int, to dest: Int) {
        spans[dest].append((offset, bytes))
        outgoingBytes[dest] += bytes
    }

    /// Collective over the communicator: tells every rank how much it receives from each.
    /// Returns this rank's total, the room `start` needs.
    func exchangeSizes(wait: (inout MPIRequest) throws -> Void) throws -> Int {
        let counts = try Collectives.allToAll(outgoingBytes.map { UInt64($0) }, comm: comm, wait: wait)
        var total = 0
        for source in 0..<size {
            guard counts[source] <= UInt64(Int.max / 4) else {
                throw KVFailure(.internal, "rank \(source) of the transfer announced \(counts[source]) bytes")
            }
            incomingBytes[source] = source == me ? 0 : Int(counts[source])
            incomingStart[source] = total
            total += incomingBytes[source]
        }
        return total
    }

    /// Starts receiving into `space` (room for `exchangeSizes`'s total, valid until done or
    /// abandoned).
    func start(receivingInto space: UnsafeMutableRawPointer) {
        self.space = space
    }

    /// One round: completes what MPI finished, posts the next receives, packs and sends the
    /// next buffers (`copy(offset, count, to)` copies arena bytes). Returns whether everything
    /// was sent and received.
    func advance(copy: (Int, Int, UnsafeMutableRawPointer) -> Void) throws -> Bool {
        var i = 0
        while i < receives.count {
            var flag: Int32 = 0
            try mpiCheck(MPI_Test(&receives[i].request, &flag, cmpi_status_ignore()), "MPI_Test of a record transfer's receive")
            if flag != 0 {
                postedCount[receives[i].source] -= 1
                receives.swapAt(i, receives.count - 1)
                receives.removeLast()
            } else {
                i += 1
            }
        }
        if let space {
            for source in 0..<size {
                while postedCount[source] < RecordTransfer.receivesPerSource, posted[source] < incomingBytes[source] {
                    let bytes = min(chunk, incomingBytes[source] - posted[source])
                    var request: MPI_Request? = cmpi_request_null()
                    try mpiCheck(MPI_Irecv(space + incomingStart[source] + posted[source], Int32(bytes), cmpi_byte(),
                                           Int32(source), RecordTransfer.tag, comm, &request), "MPI_Irecv of restored records")
                    receives.append((request, source))
                    posted[source] += bytes
                    postedCount[source] += 1
                }
            }
        }
        i = 0
        while i < sends.count {
            var flag: Int32 = 0
            try mpiCheck(MPI_Test(&sends[i].request, &flag, cmpi_status_ignore()), "MPI_Test of a record transfer's send")
            if flag != 0 {
                pool.give(sends[i].buffer)
                sends.swapAt(i, sends.count - 1)
                sends.removeLast()
            } else {
                i += 1
            }
        }
        // One buffer per destination in turn, so every receiver has data coming.
        var idle = 0
        while sends.count < window, idle < size {
            let dest = nextDestination
            nextDestination = (nextDestination + 1) % size
            guard cursor[dest].sent < outgoingBytes[dest] else { idle += 1; continue }
            idle = 0
            try sendNext(to: dest, copy: copy)
        }
        // Everything posted has arrived once no receive is under way.
        guard receives.isEmpty, sends.isEmpty else { return false }
        for r in 0..<size where posted[r] < incomingBytes[r] || cursor[r].sent < outgoingBytes[r] { return false }
        return true
    }

    /// Packs the next message for `dest` (`chunk` bytes or what is left) and sends it.
    private func sendNext(to dest: Int, copy: (Int, Int, UnsafeMutableRawPointer) -> Void) throws {
        guard let buffer = pool.take() else { throw KVFailure(.noMemory, "no memory for a re-replication buffer") }
        let bytes = min(chunk, outgoingBytes[dest] - cursor[dest].sent)
        var filled = 0
        var c = cursor[dest]
        while filled < bytes {
            let span = spans[dest][c.span]
            let n = min(span.bytes - c.within, bytes - filled)
            copy(span.offset + c.within, n, buffer + filled)
            filled += n
            c.within += n
            if c.within == span.bytes {
                c.span += 1
                c.within = 0
                packedSpans += 1
            }
        }
        c.sent += bytes
        cursor[dest] = c
        var request: MPI_Request? = cmpi_request_null()
        let rc = MPI_Isend(buffer, Int32(bytes), cmpi_byte(), Int32(dest), RecordTransfer.tag, comm, &request)
        guard rc == MPI_SUCCESS else {
            pool.give(buffer)
            try mpiCheck(rc, "MPI_Isend of restored records")
            return
        }
        sends.append((request, buffer))
    }

    /// Gives up (a member failed meanwhile): cancels the receives and completes them, waiting up
    /// to `seconds` for any MPI had already matched. Returns whether MPI is done with the receive
    /// space (not when a sender died in the middle of a message: Open MPI's single-copy read of
    /// it failed, and the receive neither completes nor cancels). Sends still under way keep
    /// their buffers for good (MPI may still read them; a bounded leak per interrupted
    /// re-replication): their requests are freed.
    func abandon(seconds: Double = 0.05) -> Bool {
        for i in receives.indices { _ = MPI_Cancel(&receives[i].request) }
        let deadline = Deadline(seconds: seconds)
        while !receives.isEmpty {
            var flag: Int32 = 0
            if MPI_Test(&receives[receives.count - 1].request, &flag, cmpi_status_ignore()) != MPI_SUCCESS || flag != 0 {
                receives.removeLast()
                continue
            }
            if deadline.hasPassed { break }
            sched_yield()
        }
        for i in sends.indices { _ = MPI_Request_free(&sends[i].request) }
        sends = []
        return receives.isEmpty
    }
}
