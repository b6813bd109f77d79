import Glibc
import Synchronization

/// What a get found.
public enum GetOutcome: Equatable, Sendable {
    /// The value, `length` bytes, was copied into the buffer (or only measured, with no buffer).
    case found(length: Int)
    /// The value is `length` bytes, longer than the buffer: nothing was written.
    case tooSmall(length: Int)
    case notFound
}

/// Statistics of one rank (kv_stat).
public enum StatKind: Int32, CaseIterable, Sendable {
    case rank = 1, size, replicas, nodes, localKeys, localBytes, pendingOps, progressThread, epoch, requestsServed,
         droppedMessages, version, repairedFiles, recoveryMicros, recoveryBytes, messagesSent, bytesSent,
         tableBytes
}

/// One open store on one rank: the engine behind both the C and the Swift API.
///
/// Concurrency: one lock guards all state; public calls take it, wait loops release it between
/// polls (so the progress thread and other application threads get in), and the progress thread
/// only ever try-locks it.
public final class Engine: @unchecked Sendable {
    public static let maxKeyLength = 65_536
    public static let maxValueLength = 1 << 30

    enum State {
        case open
        case closing           // kv_close is flushing: other threads' calls are refused
        case broken(KVFailure) // a collective timed out or MPI failed: only close is possible
        case finalized         // MPI_Finalize ran: no MPI call may be made
        case closed
    }

    public let name: String
    public let config: StoreConfig
    /// Test-only fault switches (FTKV_TEST_FAULT, FTKV_TEST_BATCH_BYTES).
    let faults: FaultInjection
    /// The thread level MPI was initialised with (MPI_Query_thread).
    public let threadLevel: Int32

    let lock = FTKVLock()
    var state = State.open
    /// Replaced by a view change (a new communicator of the survivors).
    var transport: Transport
    var view: View
    var placement: Placement
    /// Records this rank holds as a replica.
    let store: RecordTable
    /// This rank's puts/dels of the current interval (fence consistency): read-your-writes, then
    /// shipped to the replicas by the next fence.
    var pending = Engine.newPendingTable()
    /// Pending writes are written in order and read once per interval: 4 KiB pages, whose first
    /// touch costs the same every time (LargeMemory).
    static func newPendingTable() -> RecordTable { RecordTable(hugePages: false) }
    /// The previous interval's writes while a fence ships them (other threads keep writing into
    /// `pending` meanwhile, for the next interval); nil outside a fence.
    var shipping: RecordTable?
    /// An emptied table kept for the next swap, so a checkpoint loop does not regrow one per fence.
    var spareTable: RecordTable?
    /// Full-size batch buffers, sent and received, reused from fence to fence (BatchBufferPool):
    /// the window's worth, an open batch and two received ones.
    let batchBuffers = BatchBufferPool(keep: Engine.fenceWindowBytes / Wire.fenceChunkBytes + 3)
    /// The interval new writes belong to (their stamp's fence number). A fence moves it on as soon
    /// as it takes the pending writes, so a write made by another thread during the fence belongs
    /// to the next interval. The same on every rank (fences are collective).
    var writeInterval: UInt64 = 1
    var writeSeq: UInt64 = 0
    var requestsServed: UInt64 = 0
    /// When a local call last served requests (no progress thread): see serveWaitingRequests.
    var lastInlineServe: UInt64 = 0
    var progressThread: ProgressThread?
    /// Fixed at open: whether a background thread serves this store (read without the lock by
    /// other stores' wait loops, so not derived from `progressThread`, which close() clears).
    var servedInBackground = false
    /// Application threads inside a wait loop (they serve requests themselves meanwhile).
    let applicationWaiters = Atomic<Int>(0)
    /// The heartbeat watch (Engine+Failures): inactive on ranks without a progress thread.
    let heartbeats: HeartbeatRing
    /// The sources of "member X is gone" polled by detectFailures (the heartbeat ring).
    let failureDetectors: [any FailureDetector]
    /// Sends this rank's heartbeats (nil when it is not watched).
    var heartbeatSender: HeartbeatSender?
    /// Members known to have failed (monotonic; member ids are ranks of kv_open's communicator).
    var failedRanks = Set<Int32>()
    /// The view change under way (Engine+ViewChange).
    var agreement: ViewAgreement?
    /// The members the next view excludes, once decided (by this rank or the coordinator).
    var decidedExclusion: [Int32]? {
        didSet { viewDecided.store(decidedExclusion != nil, ordering: .releasing) }
    }
    /// Whether a view is decided (read by the progress thread without the lock).
    let viewDecided = Atomic<Bool>(false)
    /// The decision each survivor said it is ready to install (its excluded ids), by member: the
    /// blocking communicator creation starts only once every survivor of the decision is ready.
    var readyFor: [Int32: [Int32]] = [:]
    /// Other ranks' apply batches received while this rank streams its own table during a
    /// re-replication (nil: apply at once): acknowledged on arrival, applied after the stream.
    var deferredApplies: [Incoming]?
    /// Whether a re-replication's records are moving (Engine+Rereplication): its waits poll
    /// without backing off, since a large message moves only while both ends call MPI.
    var bulkTransferUnderWay = false
    /// Whether this rank is inside the blocking creation of a view's communicators.
    var creatingCommunicators = false
    /// Compare-and-swaps this rank, as the keys' primary, is replicating, by key (Engine+Swap).
    var swapSlots: [[UInt8]: SwapSlot] = [:]
    /// The thread installing a view (shrinking, re-replicating), if one is: it drops the lock
    /// while it waits, and no other thread may act on the store meanwhile.
    var installer: pthread_t?
    /// Whether the calling thread is the installer.
    var installing: Bool { installer.map { pthread_equal($0, pthread_self()) != 0 } ?? false }
    /// Whether the other members excluded this rank (found unresponsive): the handle is broken
    /// for good. Read without the lock by a server rank's serving loop (see `wasExcluded`).
    let excludedByOthers = Atomic<Bool>(false)
    /// Whether every key has its copies on the current view (false while re-replicating, and
    /// after a re-replication a further failure interrupted).
    var replicasComplete = true
    /// Members lost in view changes the application has not been told of yet (KV_EPROCFAILED).
    var pendingViewChangeReport: [Int32]?
    var lastReport: [Int32] = []
    /// Fences this rank completed.
    var fencesCompleted: UInt64 = 0
    /// The highest count of completed fences among the survivors of the last view change.
    var agreedFencesCompleted: UInt64 = 0
    /// What kv_comm returns: the communicator given to kv_open until a view change, then one of
    /// the survivors created with the store's own (owned by the store, freed by kv_close).
    var applicationComm: MPIComm?
    var survivorComms: [MPIComm] = []
    /// A duplicate of kv_open's communicator, the parent of every survivors' communicator: ranks
    /// in it are member ids, and nothing probes it.
    var creationComm: MPIComm?
    /// Placements of earlier views under which some keys had every replica fail: a get that
    /// finds no such key reports it lost (KV_EPROCFAILED), not absent.
    var lostPlacements: [(placement: Placement, failed: Set<Int32>)] = []
    /// How long the last view installation took (shrink and re-replication), and the key and
    /// value bytes this rank sent to restore copies in it.
    var lastRecoveryNanos: UInt64 = 0
    var lastRecoveryBytes: UInt64 = 0
    /// This rank's directory of committed versions (ftkv_dir/<name>).
    let checkpoints: StoreDirectory
    /// The number the next kv_commit gives its version: above every version seen in any rank's
    /// directory at open, so a new history never overwrites an old one's files.
    var nextVersion: UInt64 = 1
    /// The version last committed or loaded at open (0: none).
    var lastVersion: UInt64 = 0
    /// Copies committed versions to ftkv_flush_dir in the background (nil: no second tier).
    var flusher: SecondTierFlusher?
    /// Removes retired versions in the background (started by the first commit).
    var remover: BackgroundRemover?
    /// This rank's data file of its last commit (reused by a commit that finds the store unchanged).
    var lastCommittedFile: CommittedFile?
    /// Data files found missing or damaged when this store was loaded (their records came from
    /// replicas).
    var repairedFiles = 0

    var rank: Int32 { transport.rank }

    /// `monitored`: by rank, whether it runs a progress thread (and so sends heartbeats).
    init(name: String, config: StoreConfig, threadLevel: Int32, transport: Transport, view: View,
         faults: FaultInjection = FaultInjection(), monitored: [Bool] = []) {
        let ring = HeartbeatRing(me: transport.rank, monitored: monitored,
                                 period: UInt64(config.heartbeatSeconds * 1e9),
                                 suspectAfter: UInt64(config.suspectAfterSeconds * 1e9))
        self.heartbeats = ring
        self.failureDetectors = [ring]
        self.name = name
        self.config = config
        self.store = RecordTable(hugePages: config.hugePages.useHugePages)
        self.faults = faults
        self.threadLevel = threadLevel
        self.transport = transport
        self.view = view
        self.placement = Placement(view: view, replicas: config.replicas)
        self.checkpoints = StoreDirectory(base: config.directory, store: name)
        adopt(transport)
    }

    // MARK: checks

    /// Throws unless calls may proceed. Call with the lock held.
    @inline(__always)
    func checkUsable() throws {
        // Every call makes this check: the usual answer without a call.
        if case .open = state, failedRanks.isEmpty, decidedExclusion == nil, installer == nil,
           pendingViewChangeReport == nil { return }
        try checkUsableSlowly()
    }

    @inline(never)
    private func checkUsableSlowly() throws {
        switch state {
        case .open:
            // A failure is being recovered from: wait for the new view (the wait reports it),
            // or report a view change this rank's application has not heard of yet.
            if viewChangeNeeded || decidedExclusion != nil || installer != nil {
                try waitLocked(for: "the view change after a failure") {
                    !viewChangeNeeded && decidedExclusion == nil && installer == nil
                }
            }
            if pendingViewChangeReport != nil { throw viewChangeFailure() }
        case .closing:
            throw KVFailure(.misuse, "store '\(name)' is being closed by another thread")
        case .broken(let failure):
            throw KVFailure(failure.code, "store '\(name)' is unusable after an earlier failure (\(failure.message)); close it")
        case .finalized:
            throw KVFailure(.misuse, "MPI has been finalised: store '\(name)' can no longer be used (close it to release memory)")
        case .closed:
            throw KVFailure(.misuse, "store '\(name)' is closed")
        }
    }

    static func checkKey(_ key: UnsafeRawBufferPointer) throws {
        guard key.count >= 1 else { throw KVFailure(.invalid, "key is empty (keys are 1 to \(maxKeyLength) bytes)") }
        guard key.count <= maxKeyLength else {
            throw KVFailure(.invalid, "key of \(key.count) bytes exceeds the limit of \(maxKeyLength)")
        }
    }

    static func checkValue(_ value: UnsafeRawBufferPointer) throws {
        guard value.count <= maxValueLength else {
            throw KVFailure(.invalid, "value of \(value.count) bytes exceeds the limit of \(maxValueLength)")
        }
    }

    /// An MPI failure, or a collective that failed (a timed-out one stays posted, so later ones on
    /// the communicator would mismatch), leaves the store unusable: remember it. A point-to-point
    /// request that timed out does not: its late reply is recognised by id and dropped.
    func noteFailure(_ error: Error, inCollective: Bool) {
        guard let f = error as? KVFailure else { return }
        // A collective that failed half-way (timed out, or out of memory while shipping) leaves
        // ranks in different collectives: only a peer's refusal (reported after the final
        // barrier) or a misuse refused before starting keep the handle usable.
        // A view change (KV_EPROCFAILED) leaves it usable too: that is what it is for.
        let collectiveBroken = inCollective && f.code != .remote && f.code != .misuse && f.code != .procFailed
        if f.code == .mpi || collectiveBroken { state = .broken(f) }
    }

    /// Without a progress thread nobody else answers other ranks' requests, so library calls
    /// serve what is waiting (the header promises an answer "when the owner next enters a libftkv
    /// call"). Each serve costs an MPI_Improbe (about 0.4 us here even when nothing waits, more
    /// than a local put), so a call made within `serveIntervalNanos` of the previous serve skips
    /// it: a tight loop of puts or gets serves every 20 us, any call after a pause serves at once
    /// (docs/progress.md has the measurements). Opportunistic: a failure here surfaces in the
    /// next call that waits.
    @inline(__always)
    func serveWaitingRequests() {
        guard !servedInBackground else { return }
        let now = monotonicNanos()
        guard now &- lastInlineServe >= Engine.serveIntervalNanos else { return }
        lastInlineServe = now
        do {
            _ = try progressRound()
        } catch {
            noteFailure(error, inCollective: false)
        }
    }

    static let serveIntervalNanos: UInt64 = 20_000

    /// One round of progress on the transport (requests served, replies filed), then the
    /// compare-and-swaps whose replicas answered are answered in turn. Lock held.
    func progressRound() throws -> Bool {
        let active = try transport.progress(serve: serve)
        advanceSwaps()
        return active
    }

    // MARK: local operations

    public func put(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws {
        try Engine.checkKey(key)
        try Engine.checkValue(value)
        try write(key: key, value: value, tombstone: false)
    }

    public func del(key: UnsafeRawBufferPointer) throws {
        try Engine.checkKey(key)
        try write(key: key, value: UnsafeRawBufferPointer(start: nil, count: 0), tombstone: true)
    }

    private func write(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, tombstone: Bool) throws {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        serveWaitingRequests()
        switch config.consistency {
        case .fence:
            writeSeq += 1
            let stamp = Stamp(fence: writeInterval, rank: UInt32(bitPattern: rank), seq: writeSeq)
            try pending.appendDeferred(key, value: value, stamp: stamp, tombstone: tombstone)
        case .sequential:
            let hash = StableHash.hash(key)
            do {
                try replicateInOrder(key: key, hash: hash, value: tombstone ? UnsafeRawBufferPointer(start: nil, count: 0) : value,
                                     tombstone: tombstone)
            } catch {
                noteFailure(error, inCollective: false)
                throw error
            }
        }
    }

    public func get(key: UnsafeRawBufferPointer, into buffer: UnsafeMutableRawBufferPointer?) throws -> GetOutcome {
        try Engine.checkKey(key)
        let hash = StableHash.hash(key)
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        serveWaitingRequests()
        // Own writes first: this interval's, then those a fence on another thread is shipping
        // (a read after a fence finds neither, and skips both lookups).
        if !pending.isEmpty || shipping != nil, let mine = pending.find(key, hash: hash) ?? shipping?.find(key, hash: hash) {
            return Engine.deliver(mine.isTombstone ? nil : mine.value, into: buffer)
        }
        var (isLocal, target) = placement.withReplicas(ofHash: hash) { ($0.contains(rank), liveReplica($0)) }
        if isLocal {
            let rec = store.find(key, hash: hash)
            if rec == nil { try checkNotLost(hash) }
            return Engine.deliver(rec.flatMap { $0.isTombstone ? nil : $0.value }, into: buffer)
        }
        // From the first live replica; if it fails while answering, from the next one (unless
        // the view changed meanwhile: that is reported, KV_EPROCFAILED).
        let epoch = view.epoch
        while let owner = target {
            let outcome: GetOutcome
            do {
                outcome = try remoteGet(key: key, from: owner, into: buffer)
            } catch let f as KVFailure where f.code == .procFailed && view.epoch == epoch {
                target = placement.withReplicas(ofHash: hash) { liveReplica($0) }
                if target == owner { throw f }
                continue
            } catch {
                noteFailure(error, inCollective: false)
                throw error
            }
            if outcome == .notFound { try checkNotLost(hash) }
            return outcome
        }
        let holders = placement.replicaRanks(ofHash: hash).map(String.init).joined(separator: ", ")
        throw KVFailure(.procFailed, "every rank holding the key has failed (ranks \(holders))")
    }

    /// Throws KV_EPROCFAILED if a key that was not found had every copy on failed members.
    func checkNotLost(_ hash: UInt64) throws {
        for (old, failed) in lostPlacements {
            let holders = old.replicaRanks(ofHash: hash)
            if holders.allSatisfy(failed.contains) {
                throw KVFailure(.procFailed, "every rank that held the key has failed (ranks "
                    + holders.map(String.init).joined(separator: ", ") + "): its value is lost")
            }
        }
    }

    static func deliver(_ value: UnsafeRawBufferPointer?, into buffer: UnsafeMutableRawBufferPointer?) -> GetOutcome {
        guard let value else { return .notFound }
        guard let buffer else { return .found(length: value.count) }
        guard value.count <= buffer.count else { return .tooSmall(length: value.count) }
        if value.count > 0 { memcpy(buffer.baseAddress!, value.baseAddress!, value.count) }
        return .found(length: value.count)
    }

    /// Ranks holding a key, primary first.
    public func locate(key: UnsafeRawBufferPointer) throws -> [Int32] {
        try Engine.checkKey(key)
        let hash = StableHash.hash(key)
        return try lock.withLock {
            try checkUsable()
            serveWaitingRequests()
            return placement.replicaRanks(ofHash: hash)
        }
    }

    public func stat(_ what: StatKind) throws -> UInt64 {
        try lock.withLock {
            try checkUsable()
            serveWaitingRequests()
            switch what {
            case .rank: return UInt64(rank)
            case .size: return UInt64(view.members.count)
            case .replicas: return UInt64(placement.replicas)
            case .nodes: return UInt64(view.nodeCount)
            case .localKeys: return UInt64(store.liveCount)
            case .localBytes: return UInt64(store.liveBytes)
            case .pendingOps: return UInt64(pending.count + (shipping?.count ?? 0))
            case .progressThread: return progressThread == nil ? 0 : 1
            case .epoch: return UInt64(view.epoch)
            case .requestsServed: return requestsServed
            case .droppedMessages: return transport.droppedMessages
            case .version: return lastVersion
            case .repairedFiles: return UInt64(repairedFiles)
            case .recoveryMicros: return lastRecoveryNanos / 1000
            case .recoveryBytes: return lastRecoveryBytes
            case .messagesSent: return transport.messagesSent
            case .bytesSent: return transport.bytesSent
            case .tableBytes:
                let tables = [store, pending, spareTable, shipping].compactMap { $0 }
                return UInt64(tables.reduce(0) { $0 + $1.allocatedBytes })
            }
        }
    }

    // MARK: progress

    /// One round of progress by the background thread: never waits for the lock.
    func backgroundStep() -> ProgressThread.Step {
        // Heartbeats wait neither for the lock (the application may hold it for seconds) nor for
        // the communicator gate (a view change holds it while the survivors create theirs): a
        // send is not a probe, the operation the gate keeps away from communicator creation.
        heartbeatSender?.sendIfDue(now: monotonicNanos())
        // An application thread in a wait loop is serving: stand aside instead of spinning.
        if applicationWaiters.load(ordering: .relaxed) > 0 { return .standAside }
        let active = backgroundProgress()
        // A decided view is installed here, outside the communicator gate (a wait loop of the
        // application does it as well, whichever comes first).
        // (Until every survivor is ready for it, this round is as idle as any other.)
        if viewDecided.load(ordering: .acquiring), lock.tryLock() {
            let installed = installDecidedView()
            lock.unlock()
            if installed { return .active }
        }
        return active ? .active : .idle
    }

    /// Progress on behalf of a thread waiting elsewhere: another store's wait loop
    /// (Lifecycle.serveOthers) or a collective on another communicator
    /// (Lifecycle.serveWhileWaitingOnCollective). A progress thread serves this store itself,
    /// unless the waiting thread holds the communicator gate and so keeps it out.
    func serveForAnotherWait() -> Bool {
        guard !servedInBackground || CommunicatorGate.heldExclusivelyHere else { return false }
        return backgroundProgress()
    }

    private func backgroundProgress() -> Bool {
        CommunicatorGate.ifShared { progressInsideGate() } ?? false
    }

    private func progressInsideGate() -> Bool {
        guard lock.tryLock() else { return false }
        defer { lock.unlock() }
        switch state {
        case .open, .closing: break
        default: return false
        }
        do {
            let active = try progressRound()
            detectFailures()
            return active
        } catch {
            noteFailure(error, inCollective: false)
            return false
        }
    }

    /// Called by the MPI_Finalize hook: no MPI call may follow.
    func mpiFinalizing() {
        progressThread?.stop()
        lock.withLock {
            progressThread = nil
            if case .closed = state { return }
            state = .finalized
        }
    }
}
