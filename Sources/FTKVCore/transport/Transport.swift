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

/// Framed requests and replies over the store's private communicator. Peers are named by member
/// id (the rank in the communicator given to kv_open, stable across view changes); the transport
/// alone maps ids to ranks of its communicator, so a shrunk store gets a new Transport and nothing
/// else changes. No call waits for another rank: sends are nonblocking and tracked until
/// complete; receives use matched probes (MPI_Improbe/MPI_Imrecv, safe when several threads
/// probe) and complete over later progress rounds; waiting, with deadlines, belongs to the caller.
/// Not thread-safe by itself: the engine calls it under its lock.
final class Transport {
    let comm: MPIComm
    /// This rank's member id.
    let rank: Int32
    /// Rank in `comm` of each member id (-1: not a member of this communicator).
    private let commRankOfMember: [Int32]
    /// Member id of each rank of `comm`.
    let memberOfCommRank: [Int32]
    var commRank: Int32 { commRankOfMember[Int(rank)] }
    var commSize: Int32 { Int32(memberOfCommRank.count) }
    /// One past the highest member id: the size of tables indexed by member.
    var idLimit: Int32 { Int32(commRankOfMember.count) }
    /// The membership epoch stamped on messages and required of replies: read from the engine's
    /// view (the one place it is kept), set up by the engine.
    var epochSource: () -> UInt32 = { 0 }
    var epoch: UInt32 { epochSource() }
    /// Where full-size messages (fence batches) are received into (set up by the engine).
    var bufferPool: BatchBufferPool?
    /// Added to the epoch of every message sent (test-only fault injection: stale epochs).
    var epochSkew: UInt32 = 0
    /// How long a message that has started arriving may take to complete.
    let receiveTimeout: Double
    private var nextRequestID: UInt64 = 1
    /// Sends not yet complete; `info`: whether it is a notice (heartbeats are not activity: an
    /// idle store must keep backing off while they come and go). One nobody receives within
    /// ftkv_timeout (a dead or stopped peer) is cancelled and no longer tested every round; the
    /// request awaiting its answer times out anyway.
    private var sends = PendingOperations<Bool>()
    /// Requests waiting for a reply: the rank that must answer and the kind it must answer with.
    private var awaiting: [UInt64: (source: Int32, kind: Wire.Kind)] = [:]
    private var replies: [UInt64: Incoming] = [:]

    /// `members`: the member id of each rank of `comm` (ascending); `idLimit`: one past the
    /// highest member id ever used by this store.
    init(comm: MPIComm, me: Int32, members: [Int32], idLimit: Int32, receiveTimeout: Double) {
        self.receiveTimeout = receiveTimeout
        self.comm = comm
        self.rank = me
        self.memberOfCommRank = members
        var ranks = [Int32](repeating: -1, count: Int(idLimit))
        for (r, m) in members.enumerated() { ranks[Int(m)] = Int32(r) }
        self.commRankOfMember = ranks
    }

    /// The rank in `comm` of a member (nil: not a member of this communicator).
    func commRank(of member: Int32) -> Int32? {
        guard member >= 0, member < idLimit else { return nil }
        let r = commRankOfMember[Int(member)]
        return r >= 0 ? r : nil
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

    /// Sends a notice (a header, then `members` as i32s; no reply expected) to `dest`.
    func sendNotice(_ kind: Wire.Kind, argument: UInt64, members: [Int32] = [], to dest: Int32) throws {
        var w = try ByteWriter(reserving: Wire.headerSize + 4 * members.count)
        do {
            try Wire.write(header(kind, requestID: 0, argument: argument), to: &w)
            for m in members { try w.append(m) }
        } catch {
            w.release()
            throw error
        }
        try send(try w.finish(), to: dest, tag: Wire.requestTag, notice: true)
    }

    /// Sends an already framed message (a request built elsewhere, or a reply).
    func send(_ buffer: MessageBuffer, to dest: Int32, tag: Int32, notice: Bool = false) throws {
        guard buffer.count <= Int(Int32.max) else {
            throw KVFailure(.internal, "message of \(buffer.count) bytes exceeds an MPI count")
        }
        guard let destRank = commRank(of: dest) else {
            throw KVFailure(.procFailed, "rank \(dest) is no longer a member of the store")
        }
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Isend(buffer.base, Int32(buffer.count), cmpi_byte(), destRank, tag, comm, &request),
                     "MPI_Isend to rank \(dest)")
        sends.add(request, buffer: buffer, deadline: Deadline(seconds: receiveTimeout), info: notice)
        messagesSent &+= 1
        bytesSent &+= UInt64(buffer.count)
    }

    /// Messages (requests, replies, batches, notices) and their bytes sent through this transport
    /// and the ones it replaced (kv_stat; docs/scaling.md). Heartbeats and the MPI collectives
    /// are not counted.
    var messagesSent: UInt64 = 0
    var bytesSent: UInt64 = 0

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
        // One probe for both kinds (the communicator is the store's own, so every tag is ours).
        // Open MPI's MPI_Improbe (ob1) matches first and runs the whole progress engine (most of
        // an idle poll's cost) only after a miss, so a message that arrived while this rank slept
        // is pulled in by one probe and found by the next: a round whose first probe misses
        // probes once more (without it every sleep between polls delayed an arrival by its own
        // length twice; docs/progress.md).
        var probes = 0
        while true {
            probes += 1
            guard let arrival = try startReceive() else {
                if probes == 1 { continue }
                break
            }
            if let received = try arrivals.complete(at: arrival) {
                if try deliver(received, serve: serve) { active = true }
            } else {
                active = true
            }
        }
        // A message still moving is activity too: a large one (rendezvous) moves only while both
        // ends poll, so backing off (sleeping) here stalled bulk transfers at a few percent of
        // the bandwidth. Only for a while: a peer that died mid-message must not keep us spinning.
        if !active && (arrivals.anyUnderWay(startedWithin: Transport.transferSpinNanos, where: { _ in true })
                       || sends.anyUnderWay(startedWithin: Transport.transferSpinNanos, where: { !$0 })) {
            active = true
        }
        return active
    }

    /// How long a message under way keeps the poller hot (see progress).
    static let transferSpinNanos: UInt64 = 500_000_000

    /// Hands a request to `serve` and sends its reply; files a reply if it answers a request of
    /// ours from the rank asked, with the expected kind, in our epoch. Anything else is dropped
    /// and counted: frames from other processes are untrusted.
    /// Returns whether the message is activity (anything but a notice).
    @discardableResult
    private func dispatch(_ message: Incoming, serve: (Incoming) throws -> MessageBuffer?) throws -> Bool {
        let h = message.header
        if message.tag == Wire.requestTag && Wire.isNotice(h.kind) {
            _ = try serve(message)
            return false
        }
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
        return true
    }

    /// Counts a message the engine refused to act on.
    func noteDropped() { droppedMessages += 1 }

    private func completeSends() throws -> Bool {
        guard !sends.isEmpty else { return false }
        var active = false
        _ = try sends.sweep { if !$0.info { active = true } }
        return active
    }

    /// What is known of a matched message while it arrives.
    private struct Envelope {
        let count: Int32
        let source: Int32
        let tag: Int32
    }
    /// Matched messages still arriving (large ones come in fragments the sender must push).
    private var arrivals = PendingOperations<Envelope>()
    /// Messages dropped: malformed, or abandoned mid-way by a sender that stopped sending.
    private(set) var droppedMessages: UInt64 = 0

    /// Completes the receives that have finished; gives up on those past their deadline (a sender
    /// that died mid-message costs its requester a timeout, nobody else anything).
    private func completeArrivals(serve: (Incoming) throws -> MessageBuffer?) throws -> Bool {
        guard !arrivals.isEmpty else { return false }
        var active = false
        let (_, expired) = try arrivals.sweep { if try deliver($0, serve: serve) { active = true } }
        droppedMessages += UInt64(expired)
        return active
    }

    /// Hands a received message on (malformed ones are dropped).
    /// Returns whether it was activity (see dispatch).
    private func deliver(_ received: PendingOperations<Envelope>.Operation, serve: (Incoming) throws -> MessageBuffer?) throws -> Bool {
        let e = received.info
        received.buffer.setCount(Int(e.count))
        var reader = ByteReader(received.buffer.bytes)
        guard let header = try? Wire.readHeader(&reader) else {
            droppedMessages += 1
            return true
        }
        return try dispatch(Incoming(buffer: received.buffer, header: header, source: e.source, tag: e.tag), serve: serve)
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
        let pooled = bufferPool.flatMap { $0.fits(Int(count)) ? MessageBuffer(pool: $0) : nil }
        guard let buffer = pooled ?? MessageBuffer(capacity: Int(count)) else {
            throw KVFailure(.noMemory, "cannot allocate \(count) bytes for a message from rank \(status.MPI_SOURCE)")
        }
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Imrecv(buffer.base, count, cmpi_byte(), &message, &request), "MPI_Imrecv")
        // Sources are ranks of this communicator, all members: reported as member ids.
        let source = status.MPI_SOURCE >= 0 && status.MPI_SOURCE < commSize ? memberOfCommRank[Int(status.MPI_SOURCE)] : -1
        return arrivals.add(request, buffer: buffer, deadline: Deadline(seconds: receiveTimeout),
                            info: Envelope(count: count, source: source, tag: status.MPI_TAG))
    }

    /// At close: waits (politely, at most until `deadline`) for sends still in flight, then cancels
    /// what is left, sends and unfinished receives: a peer that never receives or never finishes
    /// sending must not keep us from closing.
    func finishOutstanding(until deadline: Deadline) {
        var backoff = Backoff(spinRounds: 100)
        while !sends.isEmpty && !deadline.hasPassed {
            if (try? completeSends()) == nil { break }
            backoff.pause()
        }
        sends.abandonAll()
        arrivals.abandonAll()
    }
}
