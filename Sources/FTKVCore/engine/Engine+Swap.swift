import Glibc

/// kv_cas: compare-and-swap on a key, linearizable across ranks whatever the consistency mode.
///
/// The key's primary decides every swap of the key, one at a time: it compares, applies a match
/// in its own table, sends it to the other replicas, and answers only once they all applied it.
/// Swaps of the same key that arrive meanwhile wait in line behind it. So no answer ever rests
/// on a value that only the primary holds: when the primary dies, any surviving replica has every
/// value a swap was answered on, and the view change makes one of them the new primary. A swap
/// that is under way when the view changes is answered KV_EPROCFAILED (it may have taken
/// effect; the re-replication then gives every survivor the same outcome).
/// The requester always sends the request, to itself too when it is the primary: one path.
extension Engine {
    public func compareAndSwap(key: UnsafeRawBufferPointer, expected: UnsafeRawBufferPointer?,
                               desired: UnsafeRawBufferPointer?) throws -> Bool {
        try Engine.checkKey(key)
        if let expected { try Engine.checkValue(expected) }
        if let desired { try Engine.checkValue(desired) }
        let together = (expected?.count ?? 0) + (desired?.count ?? 0)
        guard together <= Engine.maxValueLength else {
            throw KVFailure(.invalid, "expected and desired values of \(together) bytes together exceed the limit of \(Engine.maxValueLength)")
        }
        let hash = StableHash.hash(key)
        lock.lock()
        defer { lock.unlock() }
        // Waits out a view change under way: a swap is only sent to a primary of a settled view.
        try checkUsable()
        do {
            guard let primary = placement.withReplicas(ofHash: hash, { $0.first }) else {
                throw KVFailure(.internal, "the store has no members")
            }
            let request = SwapCodec.Request(key: key, expected: expected, desired: desired)
            let id = try transport.sendRequest(to: primary, kind: .swap, argument: 0, bodySize: SwapCodec.encodedSize(request)) { w in
                try SwapCodec.append(request, to: &w)
            }
            let reply = try waitForReply(id, what: "compare-and-swap at the key's primary, rank \(primary)")
            switch reply.header.status {
            case .ok where reply.header.argument <= 1:
                return reply.header.argument == 1
            case .lost:
                throw KVFailure(.procFailed, "every rank that held the key has failed: its value is lost (a kv_put writes it anew)")
            case .staleEpoch:
                throw KVFailure(.remote, "rank \(primary) refused the compare-and-swap: it is in another membership epoch")
            default:
                throw KVFailure(.remote, "rank \(primary), the key's primary, could not carry out the compare-and-swap "
                    + "(status \(reply.header.status)); it may have taken effect: read the key")
            }
        } catch {
            noteFailure(error, inCollective: false)
            throw error
        }
    }

    /// A swap request reaching this rank as the key's primary (lock held): the reply if it can
    /// be given now, nil if it comes later (advanceSwaps).
    func serveSwap(_ request: Incoming) -> MessageBuffer? {
        var body = request.body
        guard let swap = try? SwapCodec.read(&body) else {
            transport.noteDropped()
            return swapReply(to: request, status: .failed, swapped: false)
        }
        let hash = StableHash.hash(swap.key)
        guard placement.withReplicas(ofHash: hash, { $0.first }) == rank else {
            transport.noteDropped()
            return swapReply(to: request, status: .failed, swapped: false)
        }
        let slot = [UInt8](swap.key)
        if swapSlots[slot] != nil {
            swapSlots[slot]!.queued.append(request)
            return nil
        }
        return startSwap(request, swap, hash: hash, slot: slot)
    }

    /// Decides one swap: a mismatch is answered at once; a match is applied here and sent to the
    /// other replicas, and answered when they acknowledged it.
    private func startSwap(_ request: Incoming, _ swap: SwapCodec.Request, hash: UInt64, slot: [UInt8]) -> MessageBuffer? {
        let current = store.find(swap.key, hash: hash).flatMap { $0.isTombstone ? nil : $0.value }
        if current == nil, (try? checkNotLost(hash)) == nil {
            return swapReply(to: request, status: .lost, swapped: false)
        }
        guard Engine.sameValue(current, swap.expected) else {
            return swapReply(to: request, status: .ok, swapped: false)
        }
        var acks: [UInt64] = []
        do {
            let value = swap.desired ?? UnsafeRawBufferPointer(start: nil, count: 0)
            let tombstone = swap.desired == nil
            let stamp = try store.applyInOrder(swap.key, hash: hash, value: value, tombstone: tombstone,
                                               interval: writeInterval, writer: UInt32(bitPattern: request.source))
            let op = RecordView(key: swap.key, value: value, stamp: stamp, isTombstone: tombstone, hash: hash)
            let size = OpCodec.encodedSize(keyCount: swap.key.count, valueCount: value.count)
            for dest in placement.replicaRanks(ofHash: hash).dropFirst() {
                acks.append(try transport.sendRequest(to: dest, kind: .apply, argument: 1, bodySize: size) { w in
                    try OpCodec.append(op, to: &w)
                })
            }
        } catch {
            for id in acks { transport.abandon(id) }
            transport.noteDropped()
            return swapReply(to: request, status: .failed, swapped: false)
        }
        if acks.isEmpty { return swapReply(to: request, status: .ok, swapped: true) }
        swapSlots[slot] = SwapSlot(active: SwapInFlight(requester: request.source, requestID: request.header.requestID,
                                                        acks: acks, deadline: Deadline(seconds: config.timeoutSeconds)))
        return nil
    }

    /// Answers the swaps whose replicas all acknowledged (or that ran out of time), then starts
    /// the next ones in line. Part of every progress round; cheap when no swap is under way.
    func advanceSwaps() {
        guard !swapSlots.isEmpty else { return }
        for slot in Array(swapSlots.keys) {
            guard var entry = swapSlots[slot] else { continue }
            entry.active.acks.removeAll { id in
                guard let ack = transport.takeReply(id) else { return false }
                if ack.header.status != .ok { entry.active.refused = true }
                return true
            }
            let expired = !entry.active.acks.isEmpty && entry.active.deadline.hasPassed
            guard entry.active.acks.isEmpty || expired else {
                swapSlots[slot] = entry
                continue
            }
            for id in entry.active.acks { transport.abandon(id) }
            let ok = !entry.active.refused && !expired
            if let reply = try? headerOnly(.swapReply, status: ok ? .ok : .failed, requestID: entry.active.requestID,
                                           argument: ok ? 1 : 0) {
                try? transport.send(reply, to: entry.active.requester, tag: Wire.replyTag)
            }
            swapSlots[slot] = nil
            var waiting = entry.queued[...]
            while let next = waiting.popFirst() {
                if let reply = serveSwap(next) { try? transport.send(reply, to: next.source, tag: Wire.replyTag) }
                if swapSlots[slot] != nil {
                    swapSlots[slot]!.queued.append(contentsOf: waiting)
                    break
                }
            }
        }
    }

    /// A view change: swaps under way belong to the old epoch (their requesters' waits end
    /// with KV_EPROCFAILED), and their acknowledgements can no longer arrive.
    func abandonSwaps() {
        swapSlots.removeAll()
    }

    private func swapReply(to request: Incoming, status: Wire.Status, swapped: Bool) -> MessageBuffer? {
        try? headerOnly(.swapReply, status: status, requestID: request.header.requestID, argument: swapped ? 1 : 0)
    }

    /// Runs body with a view of `bytes` (nil stays nil: "no value", which an empty array is not).
    public static func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
        guard let bytes else { return try body(nil) }
        return try bytes.withUnsafeBytes { try body($0) }
    }

    /// Whether a key's current value (nil: none) is the expected one (nil: none expected).
    static func sameValue(_ current: UnsafeRawBufferPointer?, _ expected: UnsafeRawBufferPointer?) -> Bool {
        switch (current, expected) {
        case (nil, nil): return true
        case (let c?, let e?): return c.count == e.count && (c.count == 0 || memcmp(c.baseAddress!, e.baseAddress!, c.count) == 0)
        default: return false
        }
    }
}

/// A swap its primary applied and is replicating: the answer waits for every replica's ack.
struct SwapInFlight {
    let requester: Int32
    let requestID: UInt64
    var acks: [UInt64]
    let deadline: Deadline
    var refused = false
}

/// One key's swaps at its primary: the one being replicated, and those waiting behind it.
struct SwapSlot {
    var active: SwapInFlight
    var queued: [Incoming] = []
}
