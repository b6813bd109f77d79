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
        /// The store has a directory (ftkv_dir in storeOptions): an orderly stop commits a
        /// version there (the next server with the same directory loads it).
        public var durable = false
        /// Where rank 0 reports (one line per event).
        public var log: (String) -> Void = { print($0) }
        public init() {}
    }

    let options: Options
    let engine: Engine
    /// What the acceptors broadcast and connect over: a duplicate of the server job's
    /// communicator, then, after a server rank died, the survivors' (the store's kv_comm).
    /// Used by the acceptor thread only (and freed by run once it ended).
    var acceptComm: MPIComm
    var acceptEpoch: UInt32 = 0
    let ownAcceptComm: MPIComm
    /// This rank alone: server rank 0 accepts on it.
    let selfComm: MPIComm
    let rank: Int32
    let size: Int32
    /// The port listened on: replaced after a failed handshake (see rotatePort). Read and
    /// written under `lock`.
    var port: String
    let secret: String
    let timeout: Double

    /// One connected client job.
    final class ClientJob {
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

    let lock = FTKVLock()
    var clients: [ClientJob] = []
    var jobsAccepted = 0
    /// Replies to dropped jobs (see drop): small, and never freed while the process lives.
    var abandonedReplies: [JobLink.Posted] = []
    var stopAsked = false
    var acceptorEnded = false
    /// Commits client jobs asked for (the acceptors agree on each) and those the serving
    /// thread ran, with the last one's outcome: see runAskedCommit.
    var commitsAsked = 0
    var commitsRun = 0
    var lastCommit: Result<UInt64, KVFailure> = .success(0)
    /// Set by SIGTERM's handler (through `requestStop`).
    private static let stopSignalled = Atomic<Bool>(false)
    /// Reused for gets (malloc'd: a failed growth is a code, not a trap): grown to the largest
    /// value a client has read.
    var scratch: UnsafeMutableRawPointer?
    var scratchBytes = 0

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
        Ports.keepTransportProgressingAfterPeerDeaths()
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
            if options.durable {
                let version = (try? engine.stat(.version)) ?? 0
                if rank == 0 {
                    options.log(version == 0 ? "ftkv serve: no committed version to load: starting empty"
                                             : "ftkv serve: loaded version \(version)")
                }
            }
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

    /// On the serving thread: runs a commit the acceptors agreed on (every server rank runs it,
    /// so the engine's collective commit has all its ranks; meanwhile this rank serves no client
    /// request, but the engine still applies other ranks' writes while it waits). Whether one ran.
    func runAskedCommit() -> Bool {
        let (asked, run) = lock.withLock { (commitsAsked, commitsRun) }
        guard asked > run else { return false }
        let outcome = commitLogged(" (asked by a client job)")
        lock.withLock {
            lastCommit = outcome
            commitsRun = asked
        }
        return true
    }

    /// The engine's collective commit, reported by rank 0 ("committed version N" + `why`).
    private func commitLogged(_ why: String) -> Result<UInt64, KVFailure> {
        let outcome: Result<UInt64, KVFailure>
        do {
            outcome = .success(try engine.commit())
        } catch let f as KVFailure {
            outcome = .failure(f)
        } catch {
            outcome = .failure(KVFailure(.internal, "\(error)"))
        }
        if rank == 0 {
            switch outcome {
            case .success(let v): options.log("ftkv serve: committed version \(v)\(why)")
            case .failure(let f): options.log("ftkv serve: the commit\(why) failed: \(f.message)")
            }
        }
        return outcome
    }

    /// On the acceptor thread: has the serving thread run one more commit, and returns its
    /// outcome. The serving thread runs it within the engine's deadlines; if this rank was
    /// excluded meanwhile, the serving loop has left (see leaveAfterExclusion) and never will.
    func commitOnServingThread() -> Result<UInt64, KVFailure> {
        let ticket = lock.withLock { () -> Int in
            commitsAsked += 1
            return commitsAsked
        }
        while true {
            if let done = lock.withLock({ commitsRun >= ticket ? lastCommit : nil }) { return done }
            if engine.wasExcluded {
                return .failure(KVFailure(.procFailed, "server rank \(rank) was excluded by the others: it commits nothing"))
            }
            var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&ts, nil)
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
            if rank != 0 && engine.wasExcluded {
                leaveAfterExclusion(acceptor)
                return
            }
            if stopping && acceptorDone {
                let grace = graceEnds ?? Deadline(seconds: options.leaveGrace)
                graceEnds = grace
                if jobs.isEmpty || grace.hasPassed { break }
            }
            var active = runAskedCommit()
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
        if options.durable {
            // Every server rank gets here (the stop reached all acceptors), so the collective
            // commit has all its ranks; clients have left or been dropped, so nothing writes.
            if case .failure(let f) = commitLogged("") { failure = f }
        }
        do { try engine.close() } catch { failure = failure ?? error }
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

    /// A server rank the others excluded (paused or starved past ftkv_suspect_after) stops
    /// serving: its clients were answered KV_EPROCFAILED and moved to other server ranks, and its
    /// store is broken for good. Its acceptor leaves the acceptors' broadcast (left behind, so
    /// their communicator is not freed); the process then finalises MPI with the others when
    /// they stop (`ftkv stop`), so the server job still ends in order. Server rank 0 holds the
    /// port and is not covered: its acceptor waits in MPI_Comm_accept.
    private func leaveAfterExclusion(_ acceptor: pthread_t) {
        options.log("ftkv serve: rank \(rank): excluded by the other server ranks; no longer serving, waiting for the stop")
        pthread_join(acceptor, nil)
        for job in lock.withLock({ clients }) { Ports.abandon(job.link.inter) }
        lock.withLock { clients.removeAll() }
        try? engine.close()
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
}
