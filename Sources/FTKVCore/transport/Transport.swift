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

/// Framed requests and replies over the store's private communicator. No call waits for another
/// rank: sends are nonblocking and tracked until complete; receives use matched probes
/// (MPI_Improbe/MPI_Imrecv, safe when several threads probe) and complete over later progress
/// rounds; waiting, with deadlines, belongs to the caller.
/// Not thread-safe by itself: the engine calls it under its lock.
final class Transport {
    let comm: MPIComm
    let rank: Int32
    let size: Int32
    /// The membership epoch stamped on messages and required of replies: read from the engine's
    /// view (the one place it is kept), set up by the engine.
    var epochSource: () -> UInt32 = { 0 }
    var epoch: UInt32 { epochSource() }
    /// Added to the epoch of every message sent (test-only fault injection: stale epochs).
    var epochSkew: UInt32 = 0
    /// How long a message that has started arriving may take to complete.
    let receiveTimeout: Double
    private var nextRequestID: UInt64 = 1
    /// Sends not yet complete, with the buffer MPI reads from and when to give up on them.
    private var inFlight: [(request: MPI_Request?, buffer: MessageBuffer, deadline: Deadline)] = []
    /// Sends given up on (a peer that never receives): cancelled, kept until MPI releases them.
    private var cancelledSends: [(request: MPI_Request?, buffer: MessageBuffer)] = []
    /// Requests waiting for a reply: the rank that must answer and the kind it must answer with.
    private var awaiting: [UInt64: (source: Int32, kind: Wire.Kind)] = [:]
    private var replies: [UInt64: Incoming] = [:]

    init(comm: MPIComm, rank: Int32, size: Int32, receiveTimeout: Double) {
        self.receiveTimeout = receiveTimeout
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    // MARK: sending

    func header(_ kind: Wire.Kind, status: Wire.Status = .ok, requestID: UInt64, argument: UInt64) -> Wire.Header {
        Wire.Header(kind: kind, status: status, epoch: epoch &+ epochSkew, sender: rank, requestID: requestID, argument: argument)
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
        guard message.count >= Wire.headerSize,
              let kind = Wire.Kind(rawValue: message.base.load(fromByteOffset: 4, as: UInt8.self)),
              let replyKind = Wire.replyKind(to: kind) else {
            throw KVFailure(.internal, "sendRequest given a message that is not a framed request")
        }
        try send(message, to: dest, tag: Wire.requestTag)
        awaiting[id] = (dest, replyKind)
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
        inFlight.append((request, buffer, Deadline(seconds: receiveTimeout)))
    }

    /// A reply that arrived for request `id`, if any (taking it stops the wait for it).
    func takeReply(_ id: UInt64) -> Incoming? {
        guard let reply = replies.removeValue(forKey: id) else { return nil }
        awaiting[id] = nil
        return reply
    }

    /// Stops waiting for `id` (after a deadline): a late reply is dropped on arrival.
    func abandon(_ id: UInt64) {
        awaiting[id] = nil
        replies.removeValue(forKey: id)
    }

    // MARK: progress

    /// One round of progress: completes finished sends, serves arrived requests with `serve`
    /// (which returns the reply, or nil for none) and files arrived replies. Never waits: a message
    /// still arriving is left for the next round, so no caller holds its lock across another
    /// rank's pace. Returns whether anything happened, so idle callers can back off.
    func progress(serve: (Incoming) throws -> MessageBuffer?) throws -> Bool {
        var active = try completeSends()
        if try completeArrivals(serve: serve) { active = true }
        // One probe for both kinds (the communicator is the store's own, so every tag is ours):
        // each MPI_Improbe runs Open MPI's whole progress engine, most of an idle poll's cost.
        while let arrival = try startReceive() {
            active = true
            var done: Int32 = 0
            try mpiCheck(MPI_Test(&arrivals[arrival].request, &done, cmpi_status_ignore()), "MPI_Test of a receive")
            if done != 0 { try finishArrival(at: arrival, serve: serve) }
        }
        return active
    }

    /// Hands a request to `serve` and sends its reply; files a reply if it answers a request of
    /// ours from the rank asked, with the expected kind, in our epoch. Anything else is dropped
    /// and counted: frames from other processes are untrusted.
    private func dispatch(_ message: Incoming, serve: (Incoming) throws -> MessageBuffer?) throws {
        let h = message.header
        if message.tag == Wire.requestTag && Wire.replyKind(to: h.kind) != nil {
            if let reply = try serve(message) {
                try send(reply, to: message.source, tag: Wire.replyTag)
            }
        } else if message.tag == Wire.replyTag, let expected = awaiting[h.requestID], expected.source == message.source,
                  expected.kind == h.kind, h.epoch == epoch, replies[h.requestID] == nil {
            replies[h.requestID] = message
        } else {
            droppedMessages += 1
        }
    }

    /// Counts a message the engine refused to act on.
    func noteDropped() { droppedMessages += 1 }

    private func completeSends() throws -> Bool {
        cancelledSends.removeAll { c in
            var c = c
            var flag: Int32 = 0
            return MPI_Test(&c.request, &flag, cmpi_status_ignore()) != MPI_SUCCESS || flag != 0
        }
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
            } else if inFlight[i].deadline.hasPassed {
                // Nobody has received it within ftkv_timeout (a dead or stopped peer): stop
                // testing it every round; the request waiting for its answer times out anyway.
                MPI_Cancel(&inFlight[i].request)
                cancelledSends.append((inFlight[i].request, inFlight[i].buffer))
                inFlight.swapAt(i, inFlight.count - 1)
                inFlight.removeLast()
            } else {
                i += 1
            }
        }
        return done
    }

    /// A matched message being received (large ones arrive in fragments the sender must push).
    private struct Arrival {
        var request: MPI_Request?
        let buffer: MessageBuffer
        let count: Int32
        let source: Int32
        let tag: Int32
        let deadline: Deadline
    }
    private var arrivals: [Arrival] = []
    /// Messages dropped: malformed, or abandoned mid-way by a sender that stopped sending.
    private(set) var droppedMessages: UInt64 = 0

    /// Receives given up on, kept (with their buffers) until MPI reports them finished.
    private var abandoned: [Arrival] = []

    /// Completes the receives that have finished; abandons those past their deadline (a sender
    /// that died mid-message costs its requester a timeout, nobody else anything).
    private func completeArrivals(serve: (Incoming) throws -> MessageBuffer?) throws -> Bool {
        abandoned.removeAll { a in
            var a = a
            var done: Int32 = 0
            return MPI_Test(&a.request, &done, cmpi_status_ignore()) != MPI_SUCCESS || done != 0
        }
        guard !arrivals.isEmpty else { return false }
        var active = false
        var i = 0
        while i < arrivals.count {
            var done: Int32 = 0
            try mpiCheck(MPI_Test(&arrivals[i].request, &done, cmpi_status_ignore()), "MPI_Test of a receive")
            if done != 0 {
                try finishArrival(at: i, serve: serve)
                active = true
            } else if arrivals[i].deadline.hasPassed {
                // MPI may still write into the buffer: keep it until the receive ends (see below).
                MPI_Cancel(&arrivals[i].request)
                abandoned.append(arrivals[i])
                arrivals.swapAt(i, arrivals.count - 1)
                arrivals.removeLast()
                droppedMessages += 1
            } else {
                i += 1
            }
        }
        return active
    }

    /// Removes a completed arrival and hands its message on (malformed ones are dropped).
    private func finishArrival(at i: Int, serve: (Incoming) throws -> MessageBuffer?) throws {
        let a = arrivals[i]
        arrivals.swapAt(i, arrivals.count - 1)
        arrivals.removeLast()
        a.buffer.setCount(Int(a.count))
        var reader = ByteReader(a.buffer.bytes)
        guard let header = try? Wire.readHeader(&reader) else {
            droppedMessages += 1
            return
        }
        try dispatch(Incoming(buffer: a.buffer, header: header, source: a.source, tag: a.tag), serve: serve)
    }

    /// Matches one message if one has arrived and starts receiving it; returns its index in
    /// `arrivals`. Nonblocking even now: a large message arrives in fragments the sender must push.
    private func startReceive() throws -> Int? {
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
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Imrecv(buffer.base, count, cmpi_byte(), &message, &request), "MPI_Imrecv")
        arrivals.append(Arrival(request: request, buffer: buffer, count: count, source: status.MPI_SOURCE,
                                tag: status.MPI_TAG, deadline: Deadline(seconds: receiveTimeout)))
        return arrivals.count - 1
    }

    /// At close: waits (politely, at most until `deadline`) for sends still in flight, then cancels
    /// what is left, sends and unfinished receives: a peer that never receives or never finishes
    /// sending must not keep us from closing.
    func finishOutstanding(until deadline: Deadline) {
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
        for var c in cancelledSends {
            var flag: Int32 = 0
            MPI_Test(&c.request, &flag, cmpi_status_ignore())
            if flag == 0 {
                _ = Unmanaged.passRetained(c.buffer)
                MPI_Request_free(&c.request)
            }
        }
        cancelledSends.removeAll()
        // Receives a sender never finished: the same.
        for var a in arrivals + abandoned {
            MPI_Cancel(&a.request)
            var flag: Int32 = 0
            MPI_Test(&a.request, &flag, cmpi_status_ignore())
            if flag == 0 {
                _ = Unmanaged.passRetained(a.buffer)
                MPI_Request_free(&a.request)
            }
        }
        arrivals.removeAll()
        abandoned.removeAll()
    }
}
