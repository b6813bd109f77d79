import CMPI
import Glibc

/// Every MPI call the engine makes besides point-to-point traffic (Transport): communicator
/// creation and release, nonblocking collectives with deadlines, the thread level, MPI_Info
/// reading and the MPI_Finalize hook. With Transport it is the one seam between the engine and
/// MPI, so membership changes (shrinking, respawning, ULFM) touch only transport/.
enum Collectives {
    // MARK: environment

    /// The thread level MPI was initialised with, and whether it is MPI_THREAD_MULTIPLE.
    static func threadLevel() throws -> (level: Int32, multiple: Bool) {
        var provided: Int32 = 0
        try mpiCheck(MPI_Query_thread(&provided), "MPI_Query_thread")
        return (provided, Int(provided) == Int(cmpi_thread_multiple()))
    }

    static func isNull(_ comm: MPIComm) -> Bool { comm == cmpi_comm_null() }

    /// MPI_COMM_SELF.
    static var selfCommunicator: MPIComm { cmpi_comm_self() }

    static func isIntercommunicator(_ comm: MPIComm) throws -> Bool {
        var flag: Int32 = 0
        guard MPI_Comm_test_inter(comm, &flag) == MPI_SUCCESS else {
            throw KVFailure(.invalid, "the communicator passed to kv_open is not a valid MPI communicator")
        }
        return flag != 0
    }

    /// The ftkv_* keys of an MPI_Info (others are the application's business).
    static func infoOptions(_ info: MPIInfo?) throws -> [String: String] {
        guard let info, info != cmpi_info_null() else { return [:] }
        var options: [String: String] = [:]
        var nkeys: Int32 = 0
        guard MPI_Info_get_nkeys(info, &nkeys) == MPI_SUCCESS else {
            throw KVFailure(.invalid, "the MPI_Info passed to kv_open is not valid")
        }
        var keyBuf = [CChar](repeating: 0, count: Int(MPI_MAX_INFO_KEY) + 1)
        for i in 0..<nkeys {
            guard MPI_Info_get_nthkey(info, i, &keyBuf) == MPI_SUCCESS else { continue }
            let key = String(cString: keyBuf)
            guard key.hasPrefix("ftkv_") else { continue }
            var length: Int32 = 0
            var flag: Int32 = 0
            guard MPI_Info_get_valuelen(info, key, &length, &flag) == MPI_SUCCESS, flag != 0, length >= 0 else { continue }
            var valueBuf = [CChar](repeating: 0, count: Int(length) + 1)
            guard MPI_Info_get(info, key, length, &valueBuf, &flag) == MPI_SUCCESS, flag != 0 else { continue }
            options[key] = String(cString: valueBuf)
        }
        return options
    }

    // MARK: communicators

    /// A private duplicate of `comm` (MPI_Comm_idup, waited for with a deadline) that returns
    /// errors instead of aborting.
    static func duplicate(_ comm: MPIComm, timeout: Double) throws -> MPIComm {
        // The standard lets MPI write the new handle as late as completion (Open MPI 4.1 writes
        // it when posting): into memory kept if the wait gives up (CollectiveMemory).
        let memory = CollectiveMemory()
        let handle = memory.holding(cmpi_comm_null())
        // The gate covers the whole duplication: it progresses inside the MPI_Test calls.
        try CommunicatorGate.exclusively {
            try memory.run("MPI_Comm_idup", post: { MPI_Comm_idup(comm, handle, &$0) }) {
                try complete(&$0, seconds: timeout, what: "duplicating the communicator")
            }
        }
        guard let dup = handle.pointee else { throw KVFailure(.mpi, "MPI_Comm_idup returned no communicator") }
        do {
            try mpiCheck(MPI_Comm_set_errhandler(dup, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        } catch {
            free(dup)
            throw error
        }
        return dup
    }

    /// The communicator of `ranks` of `comm` (ascending), by MPI_Comm_create_group: collective
    /// over those ranks only, so the others (failed ones) need not take part. It has no
    /// nonblocking form and no deadline: call it only once every rank named is known to be alive
    /// and about to call it (the view change's agreement). `tag` tells concurrent creations apart.
    /// One communicator per tag, created in this order by every rank.
    static func createGroups(_ comm: MPIComm, ranks: [Int32], tags: [Int32]) throws -> [MPIComm] {
        var whole: MPI_Group? = nil
        try mpiCheck(MPI_Comm_group(comm, &whole), "MPI_Comm_group")
        defer { MPI_Group_free(&whole) }
        var part: MPI_Group? = nil
        try mpiCheck(MPI_Group_incl(whole, Int32(ranks.count), ranks, &part), "MPI_Group_incl")
        defer { MPI_Group_free(&part) }
        var made: [MPIComm] = []
        for tag in tags {
            var created: MPI_Comm? = cmpi_comm_null()
            try CommunicatorGate.exclusively {
                try mpiCheck(MPI_Comm_create_group(comm, part, tag, &created), "MPI_Comm_create_group")
            }
            guard let created, created != cmpi_comm_null() else { throw KVFailure(.mpi, "MPI_Comm_create_group returned no communicator") }
            made.append(created)
            try mpiCheck(MPI_Comm_set_errhandler(created, cmpi_errors_return()), "MPI_Comm_set_errhandler")
        }
        return made
    }

    static func rankAndSize(_ comm: MPIComm) throws -> (rank: Int32, size: Int32) {
        var rank: Int32 = 0
        var size: Int32 = 0
        try mpiCheck(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank")
        try mpiCheck(MPI_Comm_size(comm, &size), "MPI_Comm_size")
        return (rank, size)
    }

    static func free(_ comm: MPIComm) {
        var c: MPI_Comm? = comm
        CommunicatorGate.exclusively { _ = MPI_Comm_free(&c) }
    }

    /// The lowest rank of my shared-memory group (MPI_COMM_TYPE_SHARED), which ranks on one node
    /// agree on, and the group's size (the ranks sharing this node's cores).
    /// MPI_Comm_split_type has no nonblocking form: call it only once every rank is known present.
    static func sharedMemoryGroup(_ comm: MPIComm, rank: Int32, timeout: Double) throws -> (leader: Int32, size: Int32) {
        var shm: MPI_Comm? = cmpi_comm_null()
        try CommunicatorGate.exclusively {
            try mpiCheck(MPI_Comm_split_type(comm, cmpi_comm_type_shared(), 0, cmpi_info_null(), &shm),
                         "MPI_Comm_split_type")
        }
        defer { CommunicatorGate.exclusively { _ = MPI_Comm_free(&shm) } }
        var size: Int32 = 0
        try mpiCheck(MPI_Comm_size(shm, &size), "MPI_Comm_size")
        let memory = CollectiveMemory()
        let mine = memory.holding(rank)
        let leader = memory.holding(Int32(0))
        try memory.run("MPI_Iallreduce", post: { MPI_Iallreduce(mine, leader, 1, cmpi_int(), cmpi_op_min(), shm, &$0) }) {
            try complete(&$0, seconds: timeout, what: "finding the node leader")
        }
        return (leader.pointee, size)
    }

    // MARK: collectives

    /// Every rank's `mine` (a plain fixed-size record sent as bytes), waited for with a deadline.
    static func allgather<T>(_ mine: T, comm: MPIComm, size: Int, timeout: Double) throws -> [T] {
        try allgatherFixed(mine, comm: comm, size: size) {
            try complete(&$0, seconds: timeout, what: "agreeing on kv_open arguments")
        }
    }

    /// Every rank's bytes (any length, may differ per rank), in rank order. `wait` completes each
    /// nonblocking step (the engine's wait loop, which serves requests meanwhile).
    static func allgatherBytes(_ mine: [UInt8], comm: MPIComm, size: Int,
                               wait: (inout MPIRequest) throws -> Void) throws -> [[UInt8]] {
        let lengths = try allgatherFixed(Int64(mine.count), comm: comm, size: size, wait: wait)
        guard lengths.allSatisfy({ $0 >= 0 && $0 <= Int64(Int32.max) }), lengths.reduce(0, +) <= Int64(Int32.max) else {
            throw KVFailure(.internal, "allgather of more than 2 GiB")
        }
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) { displacements[i] = displacements[i - 1] + Int32(lengths[i - 1]) }
        let total = Int(lengths.reduce(0, +))
        let memory = CollectiveMemory()
        let counts = memory.allocate(Int32.self, count: size)
        let displs = memory.allocate(Int32.self, count: size)
        let send = memory.allocate(UInt8.self, count: mine.count)
        let receive = memory.allocate(UInt8.self, count: total)
        for i in 0..<size { counts[i] = Int32(lengths[i]); displs[i] = displacements[i] }
        mine.withUnsafeBytes { if $0.count > 0 { UnsafeMutableRawPointer(send).copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        try memory.run("MPI_Iallgatherv", post: {
            MPI_Iallgatherv(send, Int32(mine.count), cmpi_byte(), receive, counts, displs, cmpi_byte(), comm, &$0)
        }, wait: wait)
        return (0..<size).map { i in
            Array(UnsafeRawBufferPointer(start: receive + Int(displacements[i]), count: Int(lengths[i])))
        }
    }

    /// One plain fixed-size value from every rank, completed by `wait`.
    static func allgatherFixed<T>(_ mine: T, comm: MPIComm, size: Int, wait: (inout MPIRequest) throws -> Void) throws -> [T] {
        let stride = Int32(MemoryLayout<T>.stride)
        let memory = CollectiveMemory()
        let send = memory.holding(mine)
        let receive = memory.allocate(T.self, count: size)
        try memory.run("MPI_Iallgather", post: {
            MPI_Iallgather(send, stride, cmpi_byte(), receive, stride, cmpi_byte(), comm, &$0)
        }, wait: wait)
        return Array(UnsafeBufferPointer(start: receive, count: size))
    }

    /// `root`'s bytes on every rank (the others pass anything), completed by `wait`.
    static func broadcastBytes(_ bytes: [UInt8], root: Int32, rank: Int32, comm: MPIComm,
                               wait: (inout MPIRequest) throws -> Void) throws -> [UInt8] {
        let lengthMemory = CollectiveMemory()
        let length = lengthMemory.holding(Int64(bytes.count))
        try lengthMemory.run("MPI_Ibcast", post: { MPI_Ibcast(length, 8, cmpi_byte(), root, comm, &$0) }, wait: wait)
        let n = Int(length.pointee)
        guard n >= 0, n <= Int(Int32.max) else { throw KVFailure(.internal, "broadcast of \(n) bytes") }
        let memory = CollectiveMemory()
        let buffer = memory.allocate(UInt8.self, count: n)
        if rank == root { bytes.withUnsafeBytes { if n > 0 { UnsafeMutableRawPointer(buffer).copyMemory(from: $0.baseAddress!, byteCount: n) } } }
        try memory.run("MPI_Ibcast", post: { MPI_Ibcast(buffer, Int32(n), cmpi_byte(), root, comm, &$0) }, wait: wait)
        return Array(UnsafeBufferPointer(start: buffer, count: n))
    }

    /// The element-wise sum over ranks of `values` (same length everywhere), completed by `wait`.
    static func sum(_ values: [UInt64], comm: MPIComm, wait: (inout MPIRequest) throws -> Void) throws -> [UInt64] {
        try exchange(values, "MPI_Iallreduce", wait: wait) { send, receive, n, request in
            MPI_Iallreduce(send, receive, n, cmpi_uint64(), cmpi_op_sum(), comm, &request)
        }
    }

    /// One value from every rank to every rank: element i of `values` goes to rank i, and
    /// element i of the result came from rank i (MPI_Ialltoall), completed by `wait`.
    static func allToAll(_ values: [UInt64], comm: MPIComm, wait: (inout MPIRequest) throws -> Void) throws -> [UInt64] {
        try exchange(values, "MPI_Ialltoall", wait: wait) { send, receive, _, request in
            MPI_Ialltoall(send, 1, cmpi_uint64(), receive, 1, cmpi_uint64(), comm, &request)
        }
    }

    /// A nonblocking collective from `values.count` UInt64s to as many (`post` starts it, given
    /// the send and receive buffers and the count), in CollectiveMemory.
    private static func exchange(_ values: [UInt64], _ what: String, wait: (inout MPIRequest) throws -> Void,
                                 post: (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<UInt64>, Int32, inout MPI_Request?) -> Int32) throws -> [UInt64] {
        let n = values.count
        let memory = CollectiveMemory()
        let send = memory.allocate(UInt64.self, count: n)
        let receive = memory.allocate(UInt64.self, count: n)
        for i in 0..<n { send[i] = values[i] }
        try memory.run(what, post: { post(send, receive, Int32(n), &$0) }, wait: wait)
        return Array(UnsafeBufferPointer(start: receive, count: n))
    }

    /// A nonblocking barrier, to be completed with `test`.
    static func startBarrier(_ comm: MPIComm) throws -> MPIRequest {
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Ibarrier(comm, &request), "MPI_Ibarrier")
        return MPIRequest(request)
    }

    /// Whether a nonblocking operation has completed (it is then released).
    static func test(_ request: inout MPIRequest, what: @autoclosure () -> String) throws -> Bool {
        var flag: Int32 = 0
        try mpiCheck(MPI_Test(&request.handle, &flag, cmpi_status_ignore()), "MPI_Test of \(what())")
        return flag != 0
    }

    /// Completes a nonblocking operation outside any store's wait loop (kv_open, a client job's
    /// collectives): polls with a deadline and backoff, serving the process's open stores
    /// meanwhile (Lifecycle.serveWhileWaitingOnCollective). `restMicros`: the sleep once idle for
    /// long (a wait that may last hours, like a server's acceptors between clients, wakes rarely).
    static func complete(_ request: inout MPIRequest, seconds: Double, what: String, restMicros: Int? = nil) throws {
        var r = request
        var backoff = Backoff(restMicros: restMicros)
        try Polling.until(seconds: seconds, pause: { _ in backoff.pause() }, {
            if try test(&r, what: what) { return .done }
            return Lifecycle.serveWhileWaitingOnCollective() ? .active : .idle
        }) {
            KVFailure(.timedOut, "\(what) did not complete within \(seconds) s: are all ranks making the call?")
        }
        request = r
    }

    /// The same, giving up (KVFailure(.procFailed), the request left behind: a collective cannot
    /// be cancelled) as soon as `abandon` says the communicator is no longer the one to use.
    static func complete(_ request: inout MPIRequest, what: String, restMicros: Int, abandon: () -> Bool) throws {
        var r = request
        var backoff = Backoff(restMicros: restMicros)
        try Polling.until(seconds: .infinity, pause: { _ in backoff.pause() }, {
            if try test(&r, what: what) { return .done }
            if abandon() { throw KVFailure(.procFailed, "\(what): the members changed") }
            return .idle
        }) { KVFailure(.timedOut, what) }
        request = r
    }

    /// Ends the whole job (ftkv_on_failure=abort). Never returns. (Under `mpirun
    /// --enable-recovery`, Open MPI 4.1's mpirun still exits 0 afterwards, as it does when ranks
    /// exit non-zero themselves: measured.)
    static func abortJob(code: Int32) -> Never {
        MPI_Abort(cmpi_comm_world(), code)
        exit(code)
    }

    // MARK: MPI_Finalize

    /// Runs `hook` first thing in MPI_Finalize (the delete callback of an attribute on
    /// MPI_COMM_SELF). Install once.
    static func onFinalize(_ hook: @escaping () -> Void) throws {
        finalizeHook = hook
        var keyval: Int32 = 0
        try mpiCheck(MPI_Comm_create_keyval(cmpi_comm_null_copy_fn(), finalizeCallback, &keyval, nil), "MPI_Comm_create_keyval")
        try mpiCheck(MPI_Comm_set_attr(cmpi_comm_self(), keyval, nil), "MPI_Comm_set_attr")
    }

    fileprivate static var finalizeHook: (() -> Void)?
}

private let finalizeCallback: @convention(c) (MPI_Comm?, Int32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = { _, _, _, _ in
    Collectives.finalizeHook?()
    return MPI_SUCCESS
}

/// An MPI request handle (Swift cannot name MPI_REQUEST_NULL without the shim).
struct MPIRequest {
    var handle: MPI_Request?
    init(_ handle: MPI_Request?) { self.handle = handle }
}

/// MPI_Info as Swift sees Open MPI's handle type.
public typealias MPIInfo = MPI_Info
