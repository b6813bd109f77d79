import Glibc
import Synchronization

/// `ftkv serve`: the ranks of one MPI job run a store (replicated, sequential consistency) and
/// serve it to client jobs that connect to its port (kv_connect).
///
/// Threads on every server rank: the engine's progress thread (the servers' own traffic), an
/// acceptor (rank 0's blocks in MPI_Comm_accept; the others wait, asleep, for its verdict on each
/// connection, then all build the intercommunicator with the client job), and the caller's
/// thread, which serves the connected client jobs: it polls each job's intercommunicator and runs
/// every request on the engine.
/// Stopping: a client job whose hello asks to stop (`ftkv stop`) ends the acceptors; connected
/// jobs get `leaveGrace` seconds to leave; the store is closed. SIGTERM: see exitOnSignal.
public final class StoreServer {
    public struct Options {
        public var portFile: String?
        public var serviceName: String?
        /// The secret client jobs must present; nil: a random one (written to the port file).
        public var secret: String?
        /// Store options (ftkv_replicas, ftkv_timeout, ...); consistency is always sequential.
        public var storeOptions: [String: String] = [:]
        /// Seconds connected client jobs get to leave once a stop is asked.
        public var leaveGrace = 10.0
        /// Where rank 0 reports (one line per event).
        public var log: (String) -> Void = { print($0) }
        public init() {}
    }

    private let options: Options
    private let engine: Engine
    /// What the acceptors broadcast and connect over: a duplicate of the server job's
    /// communicator, then, after a server rank died, the survivors' (the store's kv_comm).
    /// Used by the acceptor thread only (and freed by run once it ended).
    private var acceptComm: MPIComm
    private var acceptEpoch: UInt32 = 0
    private let ownAcceptComm: MPIComm
    /// This rank alone: server rank 0 accepts on it.
    private let selfComm: MPIComm
    private let rank: Int32
    private let size: Int32
    /// The port listened on: replaced after a failed handshake (see rotatePort). Read and
    /// written under `lock`.
    private var port: String
    private let secret: String
    private let timeout: Double

    /// One connected client job.
    private final class ClientJob {
        let number: Int
        let link: JobLink
        var requests: UInt64 = 0
        /// Replies under way: a job that stops taking them (gone, or not reading) must not
        /// hold up the others, so none is waited for.
        var replies: [JobLink.Posted] = []
        init(number: Int, link: JobLink) {
            self.number = number
            self.link = link
        }
    }

    private let lock = FTKVLock()
    private var clients: [ClientJob] = []
    private var jobsAccepted = 0
    /// Replies to dropped jobs (see drop): small, and never freed while the process lives.
    private var abandonedReplies: [JobLink.Posted] = []
    private var stopAsked = false
    private var acceptorEnded = false
    /// Set by SIGTERM's handler (through `requestStop`).
    private static let stopSignalled = Atomic<Bool>(false)
    /// Reused for gets (malloc'd: a failed growth is a code, not a trap): grown to the largest
    /// value a client has read.
    private var scratch: UnsafeMutableRawPointer?
    private var scratchBytes = 0

    private init(options: Options, engine: Engine, acceptComm: MPIComm, rank: Int32, size: Int32,
                 port: String, secret: String, timeout: Double) {
        self.options = options
        self.engine = engine
        self.acceptComm = acceptComm
        self.ownAcceptComm = acceptComm
        self.acceptEpoch = engine.settledMembership?.epoch ?? 0
        self.selfComm = Collectives.selfCommunicator
        self.rank = rank
        self.size = size
        self.port = port
        self.secret = secret
        self.timeout = timeout
    }

    deinit { free(scratch) }

    /// Collective over `comm` (the server job): opens the store and the port, writes the port
    /// file (mode 0600: it holds the secret) and publishes the name.
    public static func start(comm: MPIComm, options: Options) throws -> StoreServer {
        var storeOptions = options.storeOptions
        storeOptions["ftkv_consistency"] = "sequential"
        let engine = try Engine.open(comm: comm, name: "served", options: storeOptions)
        let timeout = (try? StoreConfig.parse(given: storeOptions).timeoutSeconds) ?? 60
        do {
            let acceptComm = try Collectives.duplicate(comm, timeout: timeout)
            let (rank, size) = try Collectives.rankAndSize(acceptComm)
            func wait(_ r: inout MPIRequest) throws { try Collectives.complete(&r, seconds: timeout, what: "starting the server") }
            // Rank 0 opens the port; every rank learns it and the secret (or rank 0's failure).
            var opened: [UInt8] = []
            if rank == 0 {
                do {
                    let secret = try options.secret ?? randomSecret()
                    let port = try Ports.open()
                    if let path = options.portFile {
                        try FileSystem.writeAtomically(Array("\(port)\n\(secret)\n".utf8), to: path,
                                                       temporarySuffix: ".tmp\(getpid())", mode: 0o600)
                    }
                    if let name = options.serviceName { try Ports.publish(name, port: port) }
                    opened = [0] + Array("\(port)\n\(secret)".utf8)
                } catch let f as KVFailure {
                    opened = [1] + Array(f.message.utf8)
                }
            }
            let answer = try Collectives.broadcastBytes(opened, root: 0, rank: rank, comm: acceptComm, wait: wait)
            let text = String(decoding: answer.dropFirst(), as: UTF8.self)
            guard answer.first == 0 else { throw KVFailure(.invalid, "server rank 0 could not open its port: \(text)") }
            let parts = text.split(separator: "\n", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw KVFailure(.internal, "server rank 0 sent a malformed port") }
            let server = StoreServer(options: options, engine: engine, acceptComm: acceptComm, rank: rank, size: size,
                                     port: parts[0], secret: parts[1], timeout: timeout)
            if rank == 0 {
                let replicas = (try? engine.stat(.replicas)) ?? 0
                options.log("ftkv serve: \(size) ranks, \(replicas) copies of each key, listening on port \(parts[0])"
                    + (options.serviceName.map { ", published as '\($0)'" } ?? "")
                    + (options.portFile.map { ", port file \($0)" } ?? ""))
            }
            return server
        } catch {
            try? engine.close()
            throw error
        }
    }

    /// From a signal handler: async-signal-safe (one atomic store).
    public static func requestStop() { stopSignalled.store(true, ordering: .relaxed) }

    /// Serves until a stop is asked, then closes the store (collective over the server job).
    public func run() throws {
        let acceptor = try Threads.spawn("ftkv serve acceptor") { [self] in acceptLoop() }
        var backoff = Backoff(restMicros: 2000)
        var graceEnds: Deadline?
        while true {
            let (jobs, stopping, acceptorDone) = lock.withLock { (clients, stopAsked, acceptorEnded) }
            if StoreServer.stopSignalled.load(ordering: .relaxed) { exitOnSignal() }
            if stopping && acceptorDone {
                let grace = graceEnds ?? Deadline(seconds: options.leaveGrace)
                graceEnds = grace
                if jobs.isEmpty || grace.hasPassed { break }
            }
            var active = false
            for job in jobs where serveOne(job) { active = true }
            if active {
                backoff.reset()
            } else if jobs.isEmpty {
                // Nobody to serve: a new job shows up through the acceptor first.
                var ts = timespec(tv_sec: 0, tv_nsec: 20_000_000)
                nanosleep(&ts, nil)
            } else {
                backoff.pause()
            }
        }
        pthread_join(acceptor, nil)
        let left = lock.withLock { clients }
        for job in left {
            Ports.abandon(job.link.inter)
            if rank == 0 { options.log("ftkv serve: client job #\(job.number) still connected at stop: dropped") }
        }
        var failure: Error?
        do { try engine.close() } catch { failure = error }
        if rank == 0 {
            let port = lock.withLock { self.port }
            if let name = options.serviceName { Ports.unpublish(name, port: port) }
            if let path = options.portFile { FileSystem.removeFile(path) }
            Ports.close(port)
            options.log("ftkv serve: stopped after \(jobsAccepted) client job(s)")
        }
        Collectives.free(ownAcceptComm)
        if let failure { throw failure }
    }

    // MARK: accepting

    /// Every server rank, on its acceptor thread: one connection after another until a stop.
    private func acceptLoop() {
        defer { lock.withLock { acceptorEnded = true } }
        while true {
            // Rank 0 alone accepts (on MPI_COMM_SELF): a collective accept would keep every
            // other rank busy-polling inside Open MPI's broadcast between connections (measured:
            // 93% of a core each). It judges the hello; every rank then acts on the verdict,
            // awaited with a sleeping backoff: 0 accept, 1 refuse, 2 stop, 3 refuse and listen on
            // a new port (followed by its name).
            var narrow: MPIComm?
            var verdict: [UInt8] = []
            if rank == 0 {
                do {
                    let accepted = try Ports.accept(lock.withLock { port }, comm: selfComm)
                    narrow = accepted
                    let link = try JobLink(accepted)
                    verdict = [judge(link)]
                    if verdict == [3] { verdict += rotatePort() }
                } catch {
                    options.log("ftkv serve: accepting failed, no longer accepting: \(error)")
                    verdict = [2]
                }
            }
            do {
                verdict = try agreeOnVerdict(verdict)
            } catch {
                options.log("ftkv serve: rank \(rank): the acceptors lost each other, no longer accepting: \(error)")
                verdict = [2]
            }
            switch verdict.first {
            case 0:
                // The intercommunicator between every server rank and every client rank.
                do {
                    let link = try JobLink(try Ports.widen(narrow, local: acceptComm, high: false))
                    lock.withLock {
                        jobsAccepted += 1
                        clients.append(ClientJob(number: jobsAccepted, link: link))
                    }
                    if rank == 0 { options.log("ftkv serve: client job #\(jobsAccepted) connected (\(link.remoteSize) ranks)") }
                } catch {
                    options.log("ftkv serve: rank \(rank): could not complete a client job's connection: \(error)")
                }
            case 2:
                lock.withLock { stopAsked = true }
                if rank == 0 { options.log("ftkv serve: stop requested") }
            case 3 where verdict.count > 1:
                let fresh = String(decoding: verdict.dropFirst(), as: UTF8.self)
                lock.withLock { port = fresh }
            default:
                break
            }
            if let narrow { Ports.abandon(narrow) }
            if verdict.first == 2 { return }
        }
    }

    /// Rank 0's verdict, broadcast over the acceptors' communicator. When a server rank has died,
    /// the survivors move to the store's communicator of the new view (each acceptor as soon as
    /// it sees the view; a broadcast begun on the old one is left behind and redone), so new
    /// client jobs keep connecting.
    private func agreeOnVerdict(_ mine: [UInt8]) throws -> [UInt8] {
        while true {
            if let (epoch, comm) = engine.settledMembership, epoch != acceptEpoch {
                acceptComm = comm
                acceptEpoch = epoch
            }
            let comm = acceptComm, epoch = acceptEpoch
            let me = try Collectives.rankAndSize(comm).rank
            do {
                return try Collectives.broadcastBytes(mine, root: 0, rank: me, comm: comm) { r in
                    try Collectives.complete(&r, what: "waiting for client jobs", restMicros: 20_000) {
                        guard let now = engine.settledMembership else { return false }
                        return now.epoch != epoch
                    }
                }
            } catch let f as KVFailure where f.code == .procFailed {
                continue
            }
        }
    }

    /// Server rank 0: reads the hello of a connecting job (within the deadline), answers it,
    /// and returns the verdict (0 accept, 1 refuse, 2 stop, 3 refuse: no valid hello came).
    private func judge(_ link: JobLink) -> UInt8 {
        var code = KVCode.ok
        var message = ""
        var verdict: UInt8 = 0
        do {
            let hello = try link.receive(tag: ServiceWire.helloTag, from: 0, maxBytes: ServiceWire.maxHelloBytes,
                                         seconds: min(timeout, 10), what: "a connecting client job's hello")
            var r = ByteReader(hello.bytes)
            let h = try ServiceWire.readHeader(&r)
            let presented = try r.read(count: r.remaining)
            guard h.kind == .hello || h.kind == .stop else { throw KVFailure(.remote, "expected a hello, got \(h.kind)") }
            if !StoreServer.sameSecret(presented, secret) {
                code = .denied
                message = "wrong or missing secret (give the port file, or set ftkv_secret / FTKV_SECRET)"
                options.log("ftkv serve: refused a client job of \(link.remoteSize) ranks: \(presented.isEmpty ? "no" : "wrong") secret")
                verdict = 1
            } else if h.kind == .stop {
                message = "stopping"
                verdict = 2
            }
        } catch let f as KVFailure {
            code = f.code == .timedOut ? .timedOut : .remote
            message = "bad hello: \(f.message)"
            options.log("ftkv serve: refused a client job of \(link.remoteSize) ranks: \(message)")
            verdict = 3
        } catch {
            return 3
        }
        if let welcome = try? welcomeMessage(code, message) {
            try? link.send(welcome, to: 0, tag: ServiceWire.welcomeTag, seconds: min(timeout, 10))
        }
        return verdict
    }

    /// Server rank 0, after a connection that brought no valid hello: either a client that is
    /// not ours, or two jobs that connected at once and were crossed by Open MPI (see
    /// ConnectTurn), which leaves the port's keys in the name service unusable. A fresh port
    /// has fresh keys: it replaces the old one in the port file and the name service. Returns
    /// the new port's name (empty: kept the old one).
    private func rotatePort() -> [UInt8] {
        let old = lock.withLock { port }
        guard let fresh = try? Ports.open() else { return [] }
        do {
            if let path = options.portFile {
                try FileSystem.writeAtomically(Array("\(fresh)\n\(secret)\n".utf8), to: path,
                                               temporarySuffix: ".tmp\(getpid())", mode: 0o600)
            }
            if let name = options.serviceName {
                Ports.unpublish(name, port: old)
                try Ports.publish(name, port: fresh)
            }
        } catch {
            options.log("ftkv serve: could not move to a new port: \(error)")
        }
        Ports.close(old)
        options.log("ftkv serve: now listening on port \(fresh)")
        return Array(fresh.utf8)
    }

    private func welcomeMessage(_ code: KVCode, _ message: String) throws -> MessageBuffer {
        let text = Array(message.utf8)
        var w = try ServiceWire.start(.welcome, requestID: 0, argument: Int64(code.rawValue), bodySize: 8 + text.count)
        try w.append(UInt32(size))
        try w.append(UInt32((try? engine.stat(.replicas)) ?? 0))
        try text.withUnsafeBytes { try w.append($0) }
        return try w.finish()
    }

    /// Comparison in time independent of where the bytes differ.
    static func sameSecret(_ presented: UnsafeRawBufferPointer, _ secret: String) -> Bool {
        let expected = Array(secret.utf8)
        var difference = UInt8(truncatingIfNeeded: presented.count ^ expected.count)
        for i in 0..<expected.count {
            difference |= expected[i] ^ (i < presented.count ? presented[i] : 0)
        }
        return difference == 0 && !expected.isEmpty
    }

    static func randomSecret() throws -> String {
        var bytes = [UInt8](repeating: 0, count: 16)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) } }
        guard fd >= 0, read(fd, &bytes, bytes.count) == bytes.count else {
            throw KVFailure(.io, "cannot draw a random secret from /dev/urandom: \(String(cString: strerror(errno)))")
        }
        return bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// On SIGTERM. A job cannot connect to its own port (Open MPI 4.1 hangs: measured), so
    /// nothing can wake the acceptors blocked in MPI_Comm_accept, and mpirun sends SIGKILL one
    /// second after its SIGTERM (odls_base_sigkill_timeout): rank 0 removes the port file and the
    /// published name, so no client comes looking, and every rank exits at once. The store
    /// lives in memory: nothing was promised beyond the server's life. `ftkv stop` is the
    /// orderly stop (clients leave, the store is closed, MPI finalised).
    private func exitOnSignal() -> Never {
        if rank == 0 {
            if let path = options.portFile { FileSystem.removeFile(path) }
            options.log("ftkv serve: SIGTERM: port file and name withdrawn, exiting")
            if let name = options.serviceName {
                let port = lock.withLock { self.port }
                let done = Atomic<Bool>(false)
                if (try? Threads.spawn("ftkv serve unpublish", { Ports.unpublish(name, port: port); done.store(true, ordering: .releasing) })) != nil {
                    let deadline = Deadline(seconds: 0.5)
                    var backoff = Backoff(spinRounds: 10)
                    while !done.load(ordering: .acquiring) && !deadline.hasPassed { backoff.pause() }
                }
            }
        }
        _exit(0)
    }

    // MARK: serving

    /// Serves what one client job has sent; whether anything came.
    private func serveOne(_ job: ClientJob) -> Bool {
        var any = false
        do {
            try job.replies.removeAll { try job.link.isDone($0) }
        } catch {
            drop(job, because: "it took no reply for \(timeout) s")
            return true
        }
        while true {
            let arrived: (source: Int32, buffer: MessageBuffer)?
            do {
                arrived = try job.link.poll(tag: ServiceWire.requestTag, maxBytes: ServiceWire.maxRequestBytes, seconds: timeout)
            } catch {
                options.log("ftkv serve: rank \(rank): dropped a message of client job #\(job.number): \(error)")
                return true
            }
            guard let (source, buffer) = arrived else { return any }
            any = true
            job.requests += 1
            if handle(buffer, from: source, of: job) == .left { return true }
        }
    }

    private enum Handled { case served, left }

    private func handle(_ buffer: MessageBuffer, from source: Int32, of job: ClientJob) -> Handled {
        var r = ByteReader(buffer.bytes)
        guard let h = try? ServiceWire.readHeader(&r) else {
            options.log("ftkv serve: rank \(rank): dropped a malformed message from rank \(source) of client job #\(job.number)")
            return .served
        }
        if h.kind == .leave {
            lock.withLock { clients.removeAll { $0 === job } }
            // A parting handshake would wait for server ranks that died: then just let go.
            if engine.hasFailedMembers { Ports.abandon(job.link.inter) } else { Ports.disconnect(job.link.inter) }
            if rank == 0 { options.log("ftkv serve: client job #\(job.number) left (\(job.requests) requests at rank 0)") }
            return .left
        }
        let reply: MessageBuffer
        do {
            reply = try withExtendedLifetime(buffer) { try run(h, body: &r) }
        } catch let f as KVFailure {
            guard let m = try? failureReply(h.requestID, f) else { return .served }
            reply = m
        } catch {
            guard let m = try? failureReply(h.requestID, KVFailure(.internal, "\(error)")) else { return .served }
            reply = m
        }
        do {
            job.replies.append(try job.link.post(reply, to: source, tag: ServiceWire.replyTag, seconds: timeout))
        } catch {
            options.log("ftkv serve: rank \(rank): could not answer rank \(source) of client job #\(job.number): \(error)")
        }
        return .served
    }

    /// Stops serving a job that no longer behaves as a client (this rank only: the others judge
    /// for themselves). Its intercommunicator is freed without the parting handshake.
    private func drop(_ job: ClientJob, because reason: String) {
        lock.withLock { clients.removeAll { $0 === job } }
        // MPI may still read a cancelled or unfinished send's bytes: they are kept, not freed.
        abandonedReplies += job.replies
        job.replies.removeAll()
        Ports.abandon(job.link.inter)
        options.log("ftkv serve: rank \(rank): dropped client job #\(job.number): \(reason)")
    }

    private func failureReply(_ id: UInt64, _ f: KVFailure) throws -> MessageBuffer {
        try Array(f.message.utf8).withUnsafeBytes { try ServiceWire.message(.reply, requestID: id, argument: Int64(f.code.rawValue), body: $0) }
    }

    /// Runs one request on the engine; its reply. A view change of the servers (a server rank
    /// died) is retried here: the client sees a working store, never the servers' failure.
    private func run(_ h: ServiceWire.Header, body r: inout ByteReader) throws -> MessageBuffer {
        func retrying<T>(_ op: () throws -> T) throws -> T {
            var attempts = 0
            while true {
                do { return try op() } catch let f as KVFailure where f.code == .procFailed && attempts < 3 {
                    attempts += 1
                }
            }
        }
        switch h.kind {
        case .put:
            let (key, value) = try ServiceWire.readPut(&r)
            try retrying { try engine.put(key: key, value: value) }
            return try ServiceWire.message(.reply, requestID: h.requestID, argument: 0)
        case .del:
            let key = try ServiceWire.readKey(&r)
            try retrying { try engine.del(key: key) }
            return try ServiceWire.message(.reply, requestID: h.requestID, argument: 0)
        case .get:
            let key = try ServiceWire.readKey(&r)
            let capacity = Int(clamping: max(0, min(h.argument, Int64(Engine.maxValueLength))))
            if scratch == nil { try growScratch(to: 64 << 10) }
            while true {
                let view = UnsafeMutableRawBufferPointer(start: scratch, count: min(scratchBytes, capacity))
                switch try retrying({ try engine.get(key: key, into: view) }) {
                case .notFound:
                    return try ServiceWire.message(.reply, requestID: h.requestID, argument: Int64(KVCode.notFound.rawValue))
                case .found(let length):
                    var w = try ServiceWire.start(.reply, requestID: h.requestID, argument: 0, bodySize: 8 + length)
                    try w.append(UInt64(length))
                    try w.append(UnsafeRawBufferPointer(start: scratch, count: length))
                    return try w.finish()
                case .tooSmall(let length) where length > capacity:
                    var w = try ServiceWire.start(.reply, requestID: h.requestID, argument: 0, bodySize: 8)
                    try w.append(UInt64(length))
                    return try w.finish()
                case .tooSmall(let length):
                    // Fits the client, not the scratch buffer: grow it and read again.
                    try growScratch(to: length)
                }
            }
        case .swap:
            let request = try SwapCodec.read(&r)
            let swapped = try retrying {
                try engine.compareAndSwap(key: request.key, expected: request.expected, desired: request.desired)
            }
            var w = try ServiceWire.start(.reply, requestID: h.requestID, argument: 0, bodySize: 1)
            try w.append(UInt8(swapped ? 1 : 0))
            return try w.finish()
        case .echo:
            return try ServiceWire.message(.reply, requestID: h.requestID, argument: 0, body: try r.read(count: r.remaining))
        case .hello, .stop, .welcome, .reply, .leave:
            throw KVFailure(.remote, "unexpected \(h.kind) message on the request tag")
        }
    }

    private func growScratch(to bytes: Int) throws {
        guard let p = realloc(scratch, max(bytes, 1)) else {
            throw KVFailure(.noMemory, "the server cannot allocate \(bytes) bytes for a value")
        }
        scratch = p
        scratchBytes = max(bytes, 1)
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
