import CMPI
import Glibc

/// MPI's machinery for joining separate jobs (client/server mode): ports, the name service,
/// accept and connect, and framed messages over the intercommunicator between two jobs.
enum Ports {
    /// Keeps Open MPI's TCP transport progressing after a peer job dies (see
    /// cmpi_poll_transport_events_often). Called by both sides of client/server mode, whose
    /// peers are other jobs that may die; an embedded store never calls it.
    static func keepTransportProgressingAfterPeerDeaths() {
        _ = cmpi_poll_transport_events_often()
    }

    /// Opens a port; its name is what clients connect to.
    static func open() throws -> String {
        var name = [CChar](repeating: 0, count: Int(MPI_MAX_PORT_NAME) + 1)
        try mpiCheck(MPI_Open_port(cmpi_info_null(), &name), "MPI_Open_port")
        return String(cString: name)
    }

    static func close(_ port: String) {
        var name = Array(port.utf8CString)
        _ = MPI_Close_port(&name)
    }

    /// Publishes `port` under `service` (MPI_Publish_name: ompi-server across jobs).
    static func publish(_ service: String, port: String) throws {
        try withErrorsReturned {
            try mpiCheck(MPI_Publish_name(service, cmpi_info_null(), port), "MPI_Publish_name of '\(service)'")
        }
    }

    static func unpublish(_ service: String, port: String) {
        try? withErrorsReturned { _ = MPI_Unpublish_name(service, cmpi_info_null(), port) }
    }

    /// The port published under `service`; nil when no such name is published.
    static func lookup(_ service: String) throws -> String? {
        var name = [CChar](repeating: 0, count: Int(MPI_MAX_PORT_NAME) + 1)
        var rc: Int32 = 0
        try withErrorsReturned { rc = MPI_Lookup_name(service, cmpi_info_null(), &name) }
        guard rc == MPI_SUCCESS else { return nil }
        return String(cString: name)
    }

    /// The name service reports its errors on MPI_COMM_WORLD, whose handler (the application's)
    /// is usually fatal: an unknown service name would end the job. Swapped for the call.
    private static func withErrorsReturned(_ body: () throws -> Void) throws {
        var previous: MPI_Errhandler? = nil
        try mpiCheck(MPI_Comm_get_errhandler(cmpi_comm_world(), &previous), "MPI_Comm_get_errhandler")
        _ = MPI_Comm_set_errhandler(cmpi_comm_world(), cmpi_errors_return())
        defer {
            _ = MPI_Comm_set_errhandler(cmpi_comm_world(), previous)
            _ = MPI_Errhandler_free(&previous)
        }
        try body()
    }

    /// Collective over `comm`: waits for one client job to connect to `port` (blocks: Open MPI
    /// has no nonblocking accept; run it on a thread of its own). Errors are returned, not fatal.
    static func accept(_ port: String, comm: MPIComm) throws -> MPIComm {
        var inter: MPI_Comm? = cmpi_comm_null()
        try mpiCheck(MPI_Comm_accept(port, cmpi_info_null(), 0, comm, &inter), "MPI_Comm_accept")
        guard let inter, inter != cmpi_comm_null() else { throw KVFailure(.mpi, "MPI_Comm_accept returned no communicator") }
        _ = MPI_Comm_set_errhandler(inter, cmpi_errors_return())
        return inter
    }

    /// Collective over `comm`: connects to the job listening on `port`. Blocks: against a port
    /// nobody listens on any more, Open MPI 4.1 waits forever (measured), so callers run it
    /// where they can give up on it (see RemoteStore).
    static func connect(_ port: String, comm: MPIComm) throws -> MPIComm {
        var inter: MPI_Comm? = cmpi_comm_null()
        try mpiCheck(MPI_Comm_connect(port, cmpi_info_null(), 0, comm, &inter), "MPI_Comm_connect to '\(port)'")
        guard let inter, inter != cmpi_comm_null() else { throw KVFailure(.mpi, "MPI_Comm_connect returned no communicator") }
        _ = MPI_Comm_set_errhandler(inter, cmpi_errors_return())
        return inter
    }

    /// The intercommunicator between all of `local` and all of the other job, from `narrow`, an
    /// intercommunicator that has only the other job's leader (the server accepts on its rank 0
    /// alone: see StoreServer) or only ours. Collective over `local` and the other job; the ranks
    /// of `narrow` pass it (every client rank; server rank 0 only), the others nil. `high`: our
    /// side orders after the other in the merge (the client side).
    static func widen(_ narrow: MPIComm?, local: MPIComm, high: Bool) throws -> MPIComm {
        var merged: MPI_Comm? = cmpi_comm_null()
        if let narrow {
            try mpiCheck(MPI_Intercomm_merge(narrow, high ? 1 : 0, &merged), "MPI_Intercomm_merge")
        }
        defer { if merged != cmpi_comm_null() { _ = MPI_Comm_free(&merged) } }
        // In the merged communicator the low side's leader is rank 0, the high side's comes
        // right after the low side's members (one of them: the server's leader).
        var full: MPI_Comm? = cmpi_comm_null()
        try mpiCheck(MPI_Intercomm_create(local, 0, merged, high ? 0 : 1, widenTag, &full), "MPI_Intercomm_create")
        guard let full, full != cmpi_comm_null() else { throw KVFailure(.mpi, "MPI_Intercomm_create returned no communicator") }
        _ = MPI_Comm_set_errhandler(full, cmpi_errors_return())
        return full
    }

    private static let widenTag: Int32 = 7105

    /// Local: forgets an intercommunicator (no parting handshake). Never MPI_Comm_disconnect:
    /// in Open MPI 4.1 it is a fence over every process of both jobs, without a deadline, so a
    /// server rank blocked in job A's parting while another server rank sits in job B's never
    /// returns (measured: two client jobs leaving at once stopped a 4-rank server for good).
    static func abandon(_ inter: MPIComm) {
        var c: MPI_Comm? = inter
        _ = MPI_Comm_free(&c)
    }

    static func remoteSize(_ inter: MPIComm) throws -> Int32 {
        var n: Int32 = 0
        try mpiCheck(MPI_Comm_remote_size(inter, &n), "MPI_Comm_remote_size")
        return n
    }
}

/// Framed messages with the other job of an intercommunicator: every send and receive polls
/// (never a blocking MPI call) and has a deadline, since the other job is not ours to trust.
final class JobLink {
    let inter: MPIComm
    /// Ranks of the other job.
    let remoteSize: Int32

    init(_ inter: MPIComm) throws {
        self.inter = inter
        self.remoteSize = try Ports.remoteSize(inter)
    }

    /// Sends `message` to rank `dest` of the other job and waits until MPI is done with it.
    func send(_ message: MessageBuffer, to dest: Int32, tag: Int32, seconds: Double) throws {
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Isend(message.base, Int32(message.count), cmpi_byte(), dest, tag, inter, &request),
                     "MPI_Isend to rank \(dest) of the other job")
        var r = MPIRequest(request)
        do {
            try Polling.until(seconds: seconds, { try Collectives.test(&r, what: "a send to the other job") ? .done : .idle }) {
                KVFailure(.timedOut, "rank \(dest) of the other job did not take a message within \(seconds) s")
            }
        } catch {
            _ = MPI_Cancel(&r.handle)
            _ = MPI_Request_free(&r.handle)
            throw error
        }
    }

    /// A send under way (`post`): the message stays alive until MPI is done with it.
    final class Posted {
        fileprivate var request: MPIRequest
        let message: MessageBuffer
        let deadline: Deadline
        fileprivate init(request: MPIRequest, message: MessageBuffer, seconds: Double) {
            self.request = request
            self.message = message
            self.deadline = Deadline(seconds: seconds)
        }
    }

    /// Starts sending `message` to rank `dest` of the other job without waiting for it.
    func post(_ message: MessageBuffer, to dest: Int32, tag: Int32, seconds: Double) throws -> Posted {
        var request: MPI_Request? = cmpi_request_null()
        try mpiCheck(MPI_Isend(message.base, Int32(message.count), cmpi_byte(), dest, tag, inter, &request),
                     "MPI_Isend to rank \(dest) of the other job")
        return Posted(request: MPIRequest(request), message: message, seconds: seconds)
    }

    /// Whether a posted send is done (false: still under way). Throws once its deadline has
    /// passed (the send is then cancelled: the other job is not taking it).
    func isDone(_ p: Posted) throws -> Bool {
        if try Collectives.test(&p.request, what: "a send to the other job") { return true }
        guard p.deadline.hasPassed else { return false }
        _ = MPI_Cancel(&p.request.handle)
        _ = MPI_Request_free(&p.request.handle)
        throw KVFailure(.timedOut, "the other job did not take a message in time")
    }

    /// A message on `tag` (from `source`, or any rank), received whole; nil if none has arrived.
    /// Its length is the sender's to choose: capped at `maxBytes`, beyond which it is taken and
    /// dropped (reported as a malformed frame).
    func poll(tag: Int32, from source: Int32 = MPI_ANY_SOURCE, maxBytes: Int, seconds: Double) throws -> (source: Int32, buffer: MessageBuffer)? {
        var flag: Int32 = 0
        var message: MPI_Message? = cmpi_message_null()
        var status = MPI_Status()
        try mpiCheck(MPI_Improbe(source, tag, inter, &flag, &message, &status), "MPI_Improbe")
        guard flag != 0 else { return nil }
        var count: Int32 = 0
        try mpiCheck(MPI_Get_count(&status, cmpi_byte(), &count), "MPI_Get_count")
        let oversized = Int(count) > maxBytes
        guard let buffer = MessageBuffer(capacity: oversized ? 0 : Int(count)) else {
            throw KVFailure(.noMemory, "cannot allocate \(count) bytes for a message from the other job")
        }
        var request: MPI_Request? = cmpi_request_null()
        if oversized {
            // Received into nothing (truncated), so the sender is not left hanging.
            try mpiCheck(MPI_Imrecv(buffer.base, 0, cmpi_byte(), &message, &request), "MPI_Imrecv")
        } else {
            try mpiCheck(MPI_Imrecv(buffer.base, count, cmpi_byte(), &message, &request), "MPI_Imrecv")
        }
        var r = MPIRequest(request)
        do {
            try Polling.until(seconds: seconds, {
                var done: Int32 = 0
                // A truncated receive completes with an error: expected for an oversized frame.
                let rc = MPI_Test(&r.handle, &done, cmpi_status_ignore())
                if rc != MPI_SUCCESS && !oversized { try mpiCheck(rc, "MPI_Test of a receive from the other job") }
                return done != 0 || rc != MPI_SUCCESS ? .done : .idle
            }) {
                KVFailure(.timedOut, "a message from rank \(status.MPI_SOURCE) of the other job did not complete within \(seconds) s")
            }
        } catch {
            _ = MPI_Cancel(&r.handle)
            _ = MPI_Request_free(&r.handle)
            throw error
        }
        if oversized { throw KVFailure(.remote, "a \(count)-byte message from rank \(status.MPI_SOURCE) of the other job exceeds the \(maxBytes)-byte limit") }
        buffer.setCount(Int(count))
        return (status.MPI_SOURCE, buffer)
    }

    /// Waits up to `seconds` for a message on `tag` from `source`.
    func receive(tag: Int32, from source: Int32, maxBytes: Int, seconds: Double, what: String) throws -> MessageBuffer {
        var got: MessageBuffer?
        try Polling.until(seconds: seconds, {
            got = try poll(tag: tag, from: source, maxBytes: maxBytes, seconds: seconds)?.buffer
            return got == nil ? .idle : .done
        }) {
            KVFailure(.timedOut, "\(what): no answer within \(seconds) s")
        }
        guard let got else { throw KVFailure(.internal, "\(what): receive ended without a message") }
        return got
    }
}
