import Glibc

/// kv_open: validate locally, duplicate the communicator, then agree. Local problems (bad name,
/// bad option) do not return early: each rank's verdict is exchanged, so every rank returns the
/// same code instead of some ranks hanging in a collective the others left.
extension Engine {
    /// What every rank tells every other at open (fixed 56 bytes, MPI_BYTE).
    private struct OpenRecord {
        var status: Int32 = 0        // 0 or a KVCode of this rank's local validation
        var replicas: Int32 = 0
        var nameHash: UInt64 = 0
        var nodeHash: UInt64 = 0
        var consistency: Int32 = 0
        var background: Int32 = 0    // 1: a progress thread will serve (and send heartbeats)
        var nameLength: UInt64 = 0
        var heartbeatMicros: UInt64 = 0
        var suspectMicros: UInt64 = 0
    }

    /// Opens the store `name` over the communicator `comm()` with the options of `info()` (read
    /// only once MPI is known usable, so a Fortran handle is converted only then).
    public static func open(comm: () -> MPIComm?, name: String?, info: () -> MPIInfo?) throws -> Engine {
        try requireMPI()
        return try agreeAndOpen(comm: comm(), name: name, options: try Collectives.infoOptions(info()))
    }

    /// Throws unless MPI may be called now (initialised, not finalised).
    static func requireMPI() throws {
        switch MPIState.current {
        case .notInitialized: throw KVFailure(.misuse, "MPI is not initialised: call MPI_Init before kv_open")
        case .finalized: throw KVFailure(.misuse, "MPI has been finalised: kv_open is no longer possible")
        case .usable: break
        }
    }

    public static func open(comm: MPIComm?, name: String?, options: [String: String]) throws -> Engine {
        try requireMPI()
        return try agreeAndOpen(comm: comm, name: name, options: options)
    }

    /// The collective part of kv_open; MPI is known usable.
    private static func agreeAndOpen(comm: MPIComm?, name: String?, options: [String: String]) throws -> Engine {
        guard let comm, !Collectives.isNull(comm) else {
            throw KVFailure(.misuse, "the communicator is MPI_COMM_NULL")
        }
        // An intercommunicator has two groups: the store's collectives and rank-indexed tables
        // assume one. Every rank of it sees the same flag, so every rank returns KV_EINVAL.
        guard try !Collectives.isIntercommunicator(comm) else {
            throw KVFailure(.invalid, "the communicator is an intercommunicator; a store needs an intracommunicator (merge it first with MPI_Intercomm_merge)")
        }
        try Lifecycle.installFinalizeHook()
        let (provided, multiple) = try Collectives.threadLevel()

        // Local validation: remembered, reported after the agreement below.
        var localFailure: KVFailure?
        var config = StoreConfig()
        var faults = FaultInjection()
        do {
            faults = try FaultInjection.parse()
            guard let name else { throw KVFailure(.invalid, "store name is NULL") }
            try StoreConfig.validateName(name)
            config = try StoreConfig.parse(given: options)
            if config.progress == .thread && !multiple {
                throw KVFailure(.invalid, "ftkv_progress=thread needs MPI_THREAD_MULTIPLE (MPI gave level \(provided))")
            }
        } catch let f as KVFailure {
            localFailure = f
        }
        let timeout = config.timeoutSeconds

        // A private duplicate: the store's traffic never mixes with the application's.
        let dup = try Collectives.duplicate(comm, timeout: timeout)
        var ownsDup = true
        defer { if ownsDup { Collectives.free(dup) } }
        let (rank, size) = try Collectives.rankAndSize(dup)

        let wantThread = config.progress == .thread || (config.progress == .auto && multiple)
        var mine = OpenRecord()
        mine.status = localFailure?.code.rawValue ?? 0
        mine.background = wantThread ? 1 : 0
        mine.heartbeatMicros = UInt64(config.heartbeatSeconds * 1e6)
        mine.suspectMicros = UInt64(config.suspectAfterSeconds * 1e6)
        mine.replicas = Int32(config.replicas)
        mine.consistency = config.consistency.rawValue
        mine.nameHash = name.map { StableHash.hash($0) } ?? 0
        mine.nameLength = UInt64(name?.utf8.count ?? 0)
        mine.nodeHash = config.node.map { StableHash.hash($0) } ?? 0 // 0: not named, ask MPI below
        if faults.on(rank: rank).stallOpen { usleep(UInt32(min(3 * timeout, 600) * 1e6)) }
        let all = try Collectives.allgather(mine, comm: dup, size: Int(size), timeout: timeout)

        if let bad = all.firstIndex(where: { $0.status != 0 }) {
            if let localFailure, bad == Int(rank) { throw localFailure }
            let code = KVCode(rawValue: all[bad].status) ?? .invalid
            throw KVFailure(code, localFailure?.message ?? "rank \(bad) rejected its kv_open arguments (\(code.text)); see its kv_errmsg")
        }
        if let other = all.firstIndex(where: { $0.nameHash != all[0].nameHash || $0.nameLength != all[0].nameLength }) {
            throw KVFailure(.invalid, "ranks passed different store names to kv_open (rank \(other) differs from rank 0)")
        }
        if let other = all.firstIndex(where: { $0.replicas != all[0].replicas || $0.consistency != all[0].consistency }) {
            throw KVFailure(.invalid, "ftkv_replicas/ftkv_consistency differ across ranks (rank \(other) differs from rank 0)")
        }
        // A watcher must not expect heartbeats more often than its neighbour sends them.
        if let other = all.firstIndex(where: { $0.heartbeatMicros != all[0].heartbeatMicros || $0.suspectMicros != all[0].suspectMicros }) {
            throw KVFailure(.invalid, "ftkv_heartbeat/ftkv_suspect_after differ across ranks (rank \(other) differs from rank 0)")
        }

        // Node identities, and how many of the store's ranks share this machine's cores (named
        // nodes may be simulated: FTKV_NODE). MPI_Comm_split_type has no nonblocking form, so it
        // runs only once every rank is known to be inside this kv_open and past the allgather: a
        // rank arriving after the others timed out fails in the allgather, and one that arrives
        // at the allgather after the others gave up on it (their abandoned halves complete it)
        // fails in this barrier, instead of blocking alone in split_type.
        var entered = try Collectives.startBarrier(dup)
        try Collectives.complete(&entered, seconds: timeout, what: "waiting for every rank to finish the kv_open agreement")
        // Whether node names are gathered comes from gathered data, so all ranks agree.
        var nodes = all.map { $0.nodeHash }
        let (leader, ranksHere) = try Collectives.sharedMemoryGroup(dup, rank: rank, timeout: timeout)
        if nodes.contains(0) {
            var record = OpenRecord()
            record.nodeHash = mine.nodeHash != 0 ? mine.nodeHash : StableHash.hash("shm-\(leader)")
            nodes = try Collectives.allgather(record, comm: dup, size: Int(size), timeout: timeout).map { $0.nodeHash }
        }

        // The parent of the survivors' communicators after a failure (Engine+ViewChange). Never
        // probed: MPI_Comm_create_group exchanges point-to-point messages on its parent with its
        // tag, and the transport's probes (any tag, on the store's communicator) would take them.
        let creation = try Collectives.duplicate(dup, timeout: timeout)
        var ownsCreation = true
        defer { if ownsCreation { Collectives.free(creation) } }

        let transport = Transport(comm: dup, me: rank, members: (0..<size).map { $0 }, idLimit: size, receiveTimeout: timeout)
        let view = View.initial(nodeIdentities: nodes)
        let engine = Engine(name: name!, config: config, threadLevel: provided, transport: transport, view: view,
                            faults: faults.on(rank: rank), monitored: all.map { $0.background != 0 })
        engine.applicationComm = comm
        engine.creationComm = creation
        // A store with committed versions on disk is loaded before anyone can use the handle.
        try engine.lock.withLock { try engine.restoreLocked() }
        if let dir = config.flushDirectory {
            engine.flusher = try SecondTierFlusher(tier: StoreDirectory(base: dir, store: name!), rank: Int(rank), keep: config.keep)
        }
        if engine.heartbeats.isActive {
            let sender = try HeartbeatSender(comm: dup, header: engine.heartbeatHeader(),
                                             period: engine.heartbeats.period)
            sender.setDestination(engine.heartbeats.successor(failed: []).flatMap(transport.commRank(of:)) ?? -1)
            engine.heartbeatSender = sender
        }
        if wantThread {
            // Spinning without yielding after activity, unless ranks outnumber the cores here:
            // see ProgressThread.
            let cores = max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1)
            let thread = ProgressThread(spinsWithoutYielding: Int(ranksHere) <= cores) { [unowned engine] in engine.backgroundStep() }
            try thread.start()
            engine.progressThread = thread
            engine.servedInBackground = true
        }
        ownsDup = false
        ownsCreation = false
        Lifecycle.register(engine)
        return engine
    }
}
