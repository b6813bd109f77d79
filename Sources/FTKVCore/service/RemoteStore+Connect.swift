import Glibc

/// Connecting a client job to a store server (kv_connect, ftkv stop): resolving the address,
/// the connect with a deadline, the handshake, and widening to every server rank.
extension RemoteStore {
    /// Collective over `comm`: connects to the server at `address`, one of
    ///   `file:PATH`  a port file written by `ftkv serve --port-file PATH` (port and secret),
    ///   a port name  as MPI_Open_port gave it (digits, '.', ':' ...),
    ///   a name       published by `ftkv serve --name NAME` (MPI_Lookup_name, via ompi-server).
    /// The secret comes from the port file, else ftkv_secret (info key or FTKV_SECRET).
    /// The same, with the options of an MPI_Info; the communicator and the info are read only once
    /// MPI is known usable (a Fortran handle is converted only then).
    public static func connect(to address: String?, comm: () -> MPIComm?, info: () -> MPIInfo?) throws -> RemoteStore {
        try Engine.requireMPI()
        return try connect(to: address, comm: comm(), options: Collectives.infoOptions(info()))
    }

    public static func connect(to address: String?, comm: MPIComm?, options: [String: String]) throws -> RemoteStore {
        guard let store = try connect(to: address, comm: comm, options: options, hello: .hello) else {
            throw KVFailure(.internal, "kv_connect: no connection after the handshake")
        }
        return store
    }

    /// Collective over `comm`: asks the server at `address` to stop (`ftkv stop`); the secret is
    /// required as for a connection.
    public static func askToStop(at address: String?, comm: MPIComm?, options: [String: String]) throws {
        _ = try connect(to: address, comm: comm, options: options, hello: .stop)
    }

    private static func connect(to address: String?, comm: MPIComm?, options: [String: String],
                                hello: ServiceWire.Kind) throws -> RemoteStore? {
        try Engine.requireMPI()
        guard let comm, !Collectives.isNull(comm) else { throw KVFailure(.misuse, "the communicator is MPI_COMM_NULL") }
        Ports.keepTransportProgressingAfterPeerDeaths()
        guard try !Collectives.isIntercommunicator(comm) else {
            throw KVFailure(.invalid, "the communicator is an intercommunicator; kv_connect needs the client job's intracommunicator")
        }
        var localFailure: KVFailure?
        var config = StoreConfig()
        do {
            config = try StoreConfig.parse(given: options)
            guard let address, !address.isEmpty else { throw KVFailure(.invalid, "the server address is NULL or empty") }
        } catch let f as KVFailure {
            localFailure = f
        }
        let timeout = config.timeoutSeconds
        let local = try Collectives.duplicate(comm, timeout: timeout)
        var keepLocal = false
        defer { if !keepLocal { Collectives.free(local) } }
        let (rank, size) = try Collectives.rankAndSize(local)
        // A collective that timed out is still under way on `local`: never free it (see close).
        func wait(_ r: inout MPIRequest) throws {
            do { try Collectives.complete(&r, seconds: timeout, what: "kv_connect's agreement") } catch {
                keepLocal = true
                throw error
            }
        }

        // Every rank returns the same code: local problems first, then the root's resolution.
        let troubled = try Collectives.sum([localFailure == nil ? 0 : 1], comm: local, wait: wait)[0]
        if let localFailure { throw localFailure }
        if troubled > 0 { throw KVFailure(.invalid, "kv_connect failed on \(troubled) other rank(s) (bad options or address there)") }

        // Rank 0 takes its turn at the port file (ConnectTurn) and reads it; then every rank
        // connects. The turn ends with the handshake, whatever its outcome.
        var resolved: [UInt8] = []
        var turn: String?
        defer { if let turn { ConnectTurn.release(turn) } }
        if rank == 0 {
            var target = ConnectTarget()
            if let address, address.hasPrefix("file:") {
                let lock = ConnectTurn.lockPath(forPortFile: String(address.dropFirst(5)))
                do {
                    try ConnectTurn.take(lock, holdSeconds: 2 * timeout, waitSeconds: timeout)
                    turn = lock
                } catch let f as KVFailure {
                    target.failure = f
                }
            }
            if target.failure == nil { target = ConnectTarget.resolve(address ?? "", secret: config.secret) }
            resolved = target.encoded()
        }
        let target = try ConnectTarget.decode(Collectives.broadcastBytes(resolved, root: 0, rank: rank, comm: local, wait: wait))
        if let failure = target.failure { throw failure }

        let inter: MPIComm
        do {
            inter = try connectWithin(timeout, port: target.port, comm: local)
        } catch let f as KVFailure where f.code == .noServer {
            // The connect thread may still be inside MPI_Comm_connect with `local`: never free it.
            keepLocal = true
            throw f
        }
        let link: JobLink
        do { link = try JobLink(inter) } catch { Ports.abandon(inter); throw error }

        // The handshake: rank 0 presents the secret, then tells the others the verdict.
        var verdict: [UInt8] = []
        if rank == 0 { verdict = handshake(link, kind: hello, secret: target.secret, jobSize: size, timeout: timeout).encoded() }
        let welcome: Welcome
        do {
            welcome = try Welcome.decode(Collectives.broadcastBytes(verdict, root: 0, rank: rank, comm: local, wait: wait))
        } catch {
            Ports.abandon(inter)
            throw error
        }
        guard welcome.code == .ok, hello == .hello else {
            Ports.abandon(inter)
            if welcome.code == .ok { return nil }
            throw KVFailure(welcome.code, welcome.message)
        }
        // The server accepted on its rank 0 alone: widen to every server rank.
        let full: JobLink
        do {
            full = try JobLink(try Ports.widen(inter, local: local, high: true))
            Ports.abandon(inter)
        } catch {
            Ports.abandon(inter)
            throw error
        }
        keepLocal = true
        return RemoteStore(local: local, link: full, rank: rank, size: size, replicas: welcome.replicas, timeout: timeout,
                           address: address ?? "", secret: config.secret)
    }

    /// MPI_Comm_connect on a thread of its own: against a port nobody listens on any more it
    /// never returns (Open MPI 4.1, measured). After `seconds` the caller gives up; that thread
    /// and the duplicated communicator it uses stay behind (documented: the job should end).
    private static func connectWithin(_ seconds: Double, port: String, comm: MPIComm) throws -> MPIComm {
        final class Attempt: @unchecked Sendable {
            let lock = FTKVLock()
            var result: Result<MPIComm, Error>?
        }
        let attempt = Attempt()
        _ = try Threads.spawn("kv_connect") {
            let r = Result { try Ports.connect(port, comm: comm) }
            attempt.lock.withLock { attempt.result = r }
        }
        var outcome: Result<MPIComm, Error>?
        try Polling.until(seconds: seconds, {
            outcome = attempt.lock.withLock { attempt.result }
            return outcome == nil ? .idle : .done
        }) {
            KVFailure(.noServer, "no server accepted the connection to port '\(port)' within \(seconds) s (server stopped or busy? ftkv_timeout sets the deadline)")
        }
        switch outcome {
        case .success(let inter): return inter
        case .failure(let f as KVFailure): throw KVFailure(.noServer, "cannot connect to port '\(port)': \(f.message)")
        case .failure(let e): throw e
        case nil: throw KVFailure(.internal, "kv_connect: the connect thread ended without a result")
        }
    }

    /// kv_commit after the client job's barrier: rank 0 connects again, alone, with a commit
    /// hello (the port file read again: the server may have moved to a new port); the server
    /// welcomes it once every server rank committed, its text the version. Rank 0 broadcasts
    /// that welcome to the job, as kv_connect does its own.
    static func commitThroughRankZero(local: MPIComm, rank: Int32, address: String, secret: String?,
                                      timeout: Double) throws -> UInt64 {
        var verdict: [UInt8] = []
        if rank == 0 { verdict = requestCommit(address: address, secret: secret, timeout: timeout).encoded() }
        // Rank 0 may take a connect and the commit's answer: two deadlines.
        let welcome = try Welcome.decode(Collectives.broadcastBytes(verdict, root: 0, rank: rank, comm: local) { r in
            try Collectives.complete(&r, seconds: 2 * timeout + 5, what: "kv_commit: the server's answer")
        })
        guard welcome.code == .ok else { throw KVFailure(welcome.code, welcome.message) }
        guard let version = UInt64(welcome.message) else {
            throw KVFailure(.remote, "the server answered the commit with '\(welcome.message)', not a version")
        }
        return version
    }

    /// Client rank 0's commit connection; an accepted welcome's message is the server's text.
    private static func requestCommit(address: String, secret configured: String?, timeout: Double) -> Welcome {
        var turn: String?
        defer { if let turn { ConnectTurn.release(turn) } }
        do {
            if address.hasPrefix("file:") {
                let lock = ConnectTurn.lockPath(forPortFile: String(address.dropFirst(5)))
                try ConnectTurn.take(lock, holdSeconds: 2 * timeout, waitSeconds: timeout)
                turn = lock
            }
            let target = ConnectTarget.resolve(address, secret: configured)
            if let failure = target.failure { throw failure }
            let inter = try connectWithin(timeout, port: target.port, comm: Collectives.selfCommunicator)
            defer { Ports.abandon(inter) }
            var welcome = handshake(try JobLink(inter), kind: .commit, secret: target.secret, jobSize: 1, timeout: timeout)
            if welcome.code == .ok { welcome.message = welcome.serverText }
            return welcome
        } catch let f as KVFailure {
            return Welcome(code: f.code, replicas: 0, message: f.message)
        } catch {
            return Welcome(code: .internal, replicas: 0, message: "\(error)")
        }
    }

    /// Client rank 0: hello with the secret, then the server's welcome.
    private static func handshake(_ link: JobLink, kind: ServiceWire.Kind, secret: String, jobSize: Int32, timeout: Double) -> Welcome {
        do {
            let hello = try Array(secret.utf8).withUnsafeBytes {
                try ServiceWire.message(kind, argument: Int64(jobSize), body: $0)
            }
            try link.send(hello, to: 0, tag: ServiceWire.helloTag, seconds: timeout)
            let reply = try link.receive(tag: ServiceWire.welcomeTag, from: 0, maxBytes: 64 << 10, seconds: timeout,
                                         what: "kv_connect: waiting for the server's welcome")
            var r = ByteReader(reply.bytes)
            let h = try ServiceWire.readHeader(&r)
            guard h.kind == .welcome, let code = KVCode(rawValue: Int32(truncatingIfNeeded: h.argument)) else {
                throw KVFailure(.remote, "the server answered the hello with a \(h.kind) message")
            }
            let serverSize = try r.read(UInt32.self)
            let replicas = try r.read(UInt32.self)
            let text = ServiceWire.text(try r.read(count: r.remaining))
            return Welcome(code: code, replicas: Int32(clamping: replicas),
                           message: code == .ok ? "connected to \(serverSize) server ranks" : "server: \(text)",
                           serverText: text)
        } catch let f as KVFailure {
            return Welcome(code: f.code, replicas: 0, message: f.message)
        } catch {
            return Welcome(code: .internal, replicas: 0, message: "\(error)")
        }
    }
}

/// Where kv_connect goes, as rank 0 resolved it (and broadcast it to the others).
private struct ConnectTarget {
    var port = ""
    var secret = ""
    var failure: KVFailure?

    static func resolve(_ address: String, secret configured: String?) -> ConnectTarget {
        var t = ConnectTarget()
        if address.hasPrefix("file:") {
            let path = String(address.dropFirst(5))
            guard let bytes = FileSystem.readAll(path, limit: 64 << 10) else {
                t.failure = KVFailure(.noServer, "cannot read the port file '\(path)' (server not started, or stopped: it removes the file)")
                return t
            }
            let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            t.port = lines.first ?? ""
            t.secret = configured ?? (lines.count > 1 ? lines[1] : "")
        } else if looksLikePort(address) {
            t.port = address
            t.secret = configured ?? ""
        } else {
            do {
                guard let port = try Ports.lookup(address) else {
                    t.failure = KVFailure(.noServer, "no server published under the name '\(address)' (is ompi-server running, was the server started with --name \(address), is it still up?)")
                    return t
                }
                t.port = port
                t.secret = configured ?? ""
            } catch let f as KVFailure {
                t.failure = KVFailure(.noServer, "looking up '\(address)': \(f.message)")
            } catch {
                t.failure = KVFailure(.internal, "\(error)")
            }
        }
        if t.failure == nil && t.port.isEmpty { t.failure = KVFailure(.noServer, "the port file '\(address)' names no port") }
        return t
    }

    /// Open MPI port names start with the job id: digits, '.', digits, ':'.
    static func looksLikePort(_ s: String) -> Bool {
        guard let first = s.utf8.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else { return false }
        return s.contains(":")
    }

    // code i32 | port length u32 | port | secret length u32 | secret | message
    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        u32(UInt32(bitPattern: failure?.code.rawValue ?? 0))
        u32(UInt32(port.utf8.count)); out += port.utf8
        u32(UInt32(secret.utf8.count)); out += secret.utf8
        out += (failure?.message ?? "").utf8
        return out
    }

    static func decode(_ bytes: [UInt8]) throws -> ConnectTarget {
        try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            var t = ConnectTarget()
            let code = KVCode(rawValue: try r.read(Int32.self)) ?? .internal
            t.port = String(decoding: try r.read(count: Int(try r.read(UInt32.self))), as: UTF8.self)
            t.secret = String(decoding: try r.read(count: Int(try r.read(UInt32.self))), as: UTF8.self)
            let message = String(decoding: try r.read(count: r.remaining), as: UTF8.self)
            if code != .ok { t.failure = KVFailure(code, message) }
            return t
        }
    }
}

/// The server's verdict on a connection, as client rank 0 broadcasts it.
private struct Welcome {
    var code: KVCode
    var replicas: Int32
    var message: String
    /// The server's own text (a commit's version); not broadcast.
    var serverText = ""

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        withUnsafeBytes(of: code.rawValue.littleEndian) { out += $0 }
        withUnsafeBytes(of: replicas.littleEndian) { out += $0 }
        return out + Array(message.utf8)
    }

    static func decode(_ bytes: [UInt8]) throws -> Welcome {
        try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            let code = KVCode(rawValue: try r.read(Int32.self)) ?? .internal
            let replicas = try r.read(Int32.self)
            return Welcome(code: code, replicas: replicas, message: String(decoding: try r.read(count: r.remaining), as: UTF8.self))
        }
    }
}
