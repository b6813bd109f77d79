import CMPI

/// A message received from another rank.
struct Incoming {
    let buffer: MessageBuffer
    let header: Wire.Header
    let source: Int32
    let tag: Int32
    /// The bytes after the header.
    var body: ByteReader {
        var r = ByteReader(buffer.bytes)
        _ = try? r.read(count: Wire.headerSize)
        return r
    }
}

/// Framed requests and replies over the store's private communicator. Never blocks: sends are
/// nonblocking and tracked until complete; receives use matched probes (MPI_Improbe/MPI_Mrecv,
/// safe when several threads probe); waiting, with deadlines, belongs to the caller.
/// Not thread-safe by itself: the engine calls it under its lock.
final class Transport {
    let comm: MPIComm
    let rank: Int32
    let size: Int32
    var epoch: UInt32 = 0
    /// How long a message that has started arriving may take to complete.
    let receiveTimeout: Double
    private var nextRequestID: UInt64 = 1
    private var inFlight: [(request: MPI_Request?, buffer: MessageBuffer)] = []
    private var awaiting = Set<UInt64>()
    private var replies: [UInt64: Incoming] = [:]

    init(comm: MPIComm, rank: Int32, size: Int32, receiveTimeout: Double) {
        self.receiveTimeout = receiveTimeout
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    // MARK: sending

    func header(_ kind: Wire.Kind, status: Wire.Status = .ok, requestID: UInt64, argument: UInt64) -> Wire.Header {
        Wire.Header(kind: kind, status: status, epoch: epoch, sender: rank, requestID: requestID, argument: argument)
    }

    /// Sends a request to `dest`; the reply will be kept for `takeReply(id)`.
    func sendRequest(to dest: Int32, kind: Wire.Kind, argument: UInt64, bodySize: Int,
                     body: (inout ByteWriter) throws -> Void) throws -> UInt64 {
        var w = try ByteWriter(reserving: Wire.headerSize + bodySize)
        do {
            try Wire.write(header(kind, requestID: 0, argument: argument), to: &w)
            try body(&w)
        } catch {
            w.release()
            throw error
        }
        return try sendRequest(try w.finish(), to: dest)
    }

    /// Sends a framed request (id 0 in its header): gives it a fresh id, patched into the header.
    func sendRequest(_ message: MessageBuffer, to dest: Int32) throws -> UInt64 {
        let id = nextRequestID
        nextRequestID += 1
        Wire.setRequestID(id, in: message.base)
        try send(message, to: dest, tag: Wire.requestTag)
        awaiting.insert(id)
        return id
    }

    /// Sends an already framed message (a request built elsewhere, or a reply).
    func send(_ buffer: MessageBuffer, to dest: Int32, tag: Int32) throws {
        guard buffer.count <= Int(Int32.max) else {
            throw KVFailure(.internal, "message of \(buffer.count) bytes exceeds an MPI count")
        }
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Isend(buffer.base, Int32(buffer.count), cmpi_byte(), dest, tag, comm, &request),
                     "MPI_Isend to rank \(dest)")
        inFlight.append((request, buffer))
    }

    /// A reply that arrived for request `id`, if any (taking it stops the wait for it).
    func takeReply(_ id: UInt64) -> Incoming? {
        guard let reply = replies.removeValue(forKey: id) else { return nil }
        awaiting.remove(id)
        return reply
    }

    /// Stops waiting for `id` (after a deadline): a late reply is dropped on arrival.
    func abandon(_ id: UInt64) {
        awaiting.remove(id)
        replies.removeValue(forKey: id)
    }

    // MARK: progress

    /// One round of progress: completes finished sends, serves arrived requests with `serve`
    /// (which returns the reply, or nil for none) and files arrived replies. Returns whether
    /// anything happened, so idle callers can back off.
    func progress(serve: (Incoming) throws -> MessageBuffer?) throws -> Bool {
        var active = try completeSends()
        // One probe for both kinds (the communicator is the store's own, so every tag is ours):
        // each MPI_Improbe runs Open MPI's whole progress engine, most of an idle poll's cost.
        while let message = try receive() {
            active = true
            if message.tag == Wire.requestTag {
                if let reply = try serve(message) {
                    try send(reply, to: message.source, tag: Wire.replyTag)
                }
            } else if message.tag == Wire.replyTag && awaiting.contains(message.header.requestID) {
                replies[message.header.requestID] = message
            }
        }
        return active
    }

    private func completeSends() throws -> Bool {
        guard !inFlight.isEmpty else { return false }
        var done = false
        var i = 0
        while i < inFlight.count {
            var flag: Int32 = 0
            try mpiCheck(MPI_Test(&inFlight[i].request, &flag, cmpi_status_ignore()), "MPI_Test of a send")
            if flag != 0 {
                inFlight.swapAt(i, inFlight.count - 1)
                inFlight.removeLast()
                done = true
            } else {
                i += 1
            }
        }
        return done
    }

    /// Receives one message if one has arrived. Malformed messages are dropped.
    private func receive() throws -> Incoming? {
        while true {
            var flag: Int32 = 0
            var message: MPI_Message? = cmpi_message_null()
            var status = MPI_Status()
            try mpiCheck(MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &message, &status), "MPI_Improbe")
            guard flag != 0 else { return nil }
            var count: Int32 = 0
            try mpiCheck(MPI_Get_count(&status, cmpi_byte(), &count), "MPI_Get_count")
            guard let buffer = MessageBuffer(capacity: Int(count)) else {
                throw KVFailure(.noMemory, "cannot allocate \(count) bytes for a message from rank \(status.MPI_SOURCE)")
            }
            // Nonblocking even now: a large message arrives in fragments that the sender must push,
            // and a sender that dies mid-way must cost a timeout, not a hang.
            var request: MPI_Request? = cmpi_request_null()
            try mpiCheck(MPI_Imrecv(buffer.base, count, cmpi_byte(), &message, &request), "MPI_Imrecv")
            let deadline = Deadline(seconds: receiveTimeout)
            var backoff = Backoff(spinRounds: 10_000, maxSleepMicros: 100)
            while true {
                var done: Int32 = 0
                try mpiCheck(MPI_Test(&request, &done, cmpi_status_ignore()), "MPI_Test of a receive")
                if done != 0 { break }
                if deadline.hasPassed {
                    MPI_Cancel(&request)
                    _ = Unmanaged.passRetained(buffer) // MPI may still write into it
                    throw KVFailure(.timedOut, "a \(count)-byte message from rank \(status.MPI_SOURCE) did not complete within \(receiveTimeout) s")
                }
                backoff.pause()
            }
            buffer.setCount(Int(count))
            var reader = ByteReader(buffer.bytes)
            guard let header = try? Wire.readHeader(&reader) else { continue }
            return Incoming(buffer: buffer, header: header, source: status.MPI_SOURCE, tag: status.MPI_TAG)
        }
    }

    /// Waits (politely, at most until `deadline`) for sends still in flight, then cancels any left:
    /// a peer that never receives must not keep us from closing.
    func drainSends(until deadline: Deadline) {
        var backoff = Backoff(spinRounds: 100)
        while !inFlight.isEmpty && !deadline.hasPassed {
            if (try? completeSends()) == nil { break }
            backoff.pause()
        }
        for i in inFlight.indices {
            MPI_Cancel(&inFlight[i].request)
            var flag: Int32 = 0
            MPI_Test(&inFlight[i].request, &flag, cmpi_status_ignore())
            if flag == 0 {
                // Still owned by MPI: keep the bytes alive for good rather than free them under it.
                _ = Unmanaged.passRetained(inFlight[i].buffer)
                MPI_Request_free(&inFlight[i].request)
            }
        }
        inFlight.removeAll()
    }
}
