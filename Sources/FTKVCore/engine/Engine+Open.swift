import CMPI
import Glibc

/// kv_open: validate locally, duplicate the communicator, then agree. Local problems (bad name,
/// bad option) do not return early: each rank's verdict is exchanged, so every rank returns the
/// same code instead of some ranks hanging in a collective the others left.
extension Engine {
    /// What every rank tells every other at open (fixed 40 bytes, MPI_BYTE).
    private struct OpenRecord {
        var status: Int32 = 0        // 0 or a KVCode of this rank's local validation
        var replicas: Int32 = 0
        var nameHash: UInt64 = 0
        var nodeHash: UInt64 = 0
        var consistency: Int32 = 0
        var reserved: Int32 = 0
        var nameLength: UInt64 = 0
    }

    public static func open(comm: MPIComm?, name: String?, options: [String: String]) throws -> Engine {
        switch MPIState.current {
        case .notInitialized: throw KVFailure(.misuse, "MPI is not initialised: call MPI_Init before kv_open")
        case .finalized: throw KVFailure(.misuse, "MPI has been finalised: kv_open is no longer possible")
        case .usable: break
        }
        guard let comm, comm != cmpi_comm_null() else {
            throw KVFailure(.misuse, "the communicator is MPI_COMM_NULL")
        }
        // An intercommunicator has two groups: the store's collectives and rank-indexed tables
        // assume one. Every rank of it sees the same flag, so every rank returns KV_EINVAL.
        var isInter: Int32 = 0
        guard MPI_Comm_test_inter(comm, &isInter) == MPI_SUCCESS else {
            throw KVFailure(.invalid, "the communicator passed to kv_open is not a valid MPI communicator")
        }
        guard isInter == 0 else {
            throw KVFailure(.invalid, "kv_open needs an intracommunicator; this is an intercommunicator (merge it with MPI_Intercomm_merge)")
        }
        try Lifecycle.installFinalizeHook()

        var provided: Int32 = 0
        try mpiCheck(MPI_Query_thread(&provided), "MPI_Query_thread")
        let multiple = Int(provided) == Int(cmpi_thread_multiple())

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
        var dup: MPI_Comm? = cmpi_comm_null()
        var request: MPI_Request? = cmpi_request_null()
        // The gate covers the whole duplication: it progresses inside the MPI_Test calls.
        try CommunicatorGate.exclusively {
            try mpiCheck(MPI_Comm_idup(comm, &dup, &request), "MPI_Comm_idup")
            try waitForCollective(&request, seconds: timeout, what: "duplicating the communicator")
        }
        var ownsDup = true
        defer {
            if ownsDup { CommunicatorGate.exclusively { _ = MPI_Comm_free(&dup) } }
        }
        try mpiCheck(MPI_Comm_set_errhandler(dup, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0
        var size: Int32 = 0
        try mpiCheck(MPI_Comm_rank(dup, &rank), "MPI_Comm_rank")
        try mpiCheck(MPI_Comm_size(dup, &size), "MPI_Comm_size")

        var mine = OpenRecord()
        mine.status = localFailure?.code.rawValue ?? 0
        mine.replicas = Int32(config.replicas)
        mine.consistency = config.consistency.rawValue
        mine.nameHash = name.map { StableHash.hash($0) } ?? 0
        mine.nameLength = UInt64(name?.utf8.count ?? 0)
        mine.nodeHash = config.node.map { StableHash.hash($0) } ?? 0 // 0: not named, ask MPI below
        let all = try allgather(mine, comm: dup!, size: Int(size), timeout: timeout)

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

        // Node identities. MPI_Comm_split_type has no nonblocking form, so it runs only now that the
        // allgather has shown every rank is inside this kv_open (a rank arriving after the others
        // timed out fails in the allgather instead of blocking here alone), and only if some rank
        // did not name its node. The decision comes from gathered data, so all ranks take it.
        var nodes = all.map { $0.nodeHash }
        if nodes.contains(0) {
            let leader = try sharedMemoryLeader(dup!, rank: rank, timeout: timeout)
            var record = OpenRecord()
            record.nodeHash = mine.nodeHash != 0 ? mine.nodeHash : StableHash.hash("shm-\(leader)")
            nodes = try allgather(record, comm: dup!, size: Int(size), timeout: timeout).map { $0.nodeHash }
        }

        let transport = Transport(comm: dup!, rank: rank, size: size, receiveTimeout: timeout)
        let view = View.initial(nodeIdentities: nodes)
        let engine = Engine(name: name!, config: config, threadLevel: provided, transport: transport, view: view, faults: faults)
        let wantThread = config.progress == .thread || (config.progress == .auto && multiple)
        if wantThread {
            let thread = ProgressThread { [unowned engine] in engine.backgroundStep() }
            try thread.start()
            engine.progressThread = thread
            engine.servedInBackground = true
        }
        ownsDup = false
        Lifecycle.register(engine)
        return engine
    }

    /// The lowest rank of my shared-memory group (MPI_COMM_TYPE_SHARED): ranks on one node agree.
    private static func sharedMemoryLeader(_ comm: MPI_Comm, rank: Int32, timeout: Double) throws -> Int32 {
        var shm: MPI_Comm? = cmpi_comm_null()
        try CommunicatorGate.exclusively {
            try mpiCheck(MPI_Comm_split_type(comm, cmpi_comm_type_shared(), 0, cmpi_info_null(), &shm),
                         "MPI_Comm_split_type")
        }
        defer { CommunicatorGate.exclusively { _ = MPI_Comm_free(&shm) } }
        var mine = rank
        var leader: Int32 = 0
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Iallreduce(&mine, &leader, 1, cmpi_int(), cmpi_op_min(), shm, &request), "MPI_Iallreduce")
        try waitForCollective(&request, seconds: timeout, what: "finding the node leader")
        return leader
    }

    private static func allgather(_ mine: OpenRecord, comm: MPI_Comm, size: Int, timeout: Double) throws -> [OpenRecord] {
        var send = mine
        var all = [OpenRecord](repeating: OpenRecord(), count: size)
        let bytes = Int32(MemoryLayout<OpenRecord>.stride)
        var request: MPI_Request? = cmpi_request_null()
        try withUnsafeMutableBytes(of: &send) { s in
            try all.withUnsafeMutableBytes { r in
                try mpiCheck(MPI_Iallgather(s.baseAddress, bytes, cmpi_byte(), r.baseAddress, bytes, cmpi_byte(), comm, &request),
                             "MPI_Iallgather")
                try waitForCollective(&request, seconds: timeout, what: "agreeing on kv_open arguments")
            }
        }
        return all
    }
}
