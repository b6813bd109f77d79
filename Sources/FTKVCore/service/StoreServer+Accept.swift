import Glibc

/// Accepting client jobs (StoreServer's acceptor thread): rank 0 accepts and judges each hello,
/// every server rank acts on its verdict, accepted jobs are widened to every server rank.
extension StoreServer {
    /// Every server rank, on its acceptor thread: one connection after another until a stop.
    func acceptLoop() {
        defer { lock.withLock { acceptorEnded = true } }
        while true {
            // Rank 0 alone accepts (on MPI_COMM_SELF): a collective accept would keep every
            // other rank busy-polling inside Open MPI's broadcast between connections (measured:
            // 93% of a core each). It judges the hello; every rank then acts on the verdict,
            // awaited with a sleeping backoff: 0 accept, 1 refuse, 2 stop, 3 refuse and listen on
            // a new port (followed by its name), 4 commit (rank 0 answers once it is done).
            var narrow: MPIComm?
            var narrowLink: JobLink?
            var verdict: [UInt8] = []
            if rank == 0 {
                do {
                    let accepted = try Ports.accept(lock.withLock { port }, comm: selfComm)
                    narrow = accepted
                    let link = try JobLink(accepted)
                    narrowLink = link
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
            case 4:
                let outcome = commitOnServingThread()
                if rank == 0, let link = narrowLink {
                    let answer: MessageBuffer?
                    switch outcome {
                    case .success(let version): answer = try? welcomeMessage(.ok, "\(version)")
                    case .failure(let f): answer = try? welcomeMessage(f.code, f.message)
                    }
                    if let answer { try? link.send(answer, to: 0, tag: ServiceWire.welcomeTag, seconds: min(timeout, 10)) }
                }
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
    func agreeOnVerdict(_ mine: [UInt8]) throws -> [UInt8] {
        while true {
            // The others went on without this rank (it was paused or starved past
            // ftkv_suspect_after): it stops accepting, as at a stop (see run).
            if engine.wasExcluded { return [2] }
            if let (epoch, comm) = engine.settledMembership, epoch != acceptEpoch {
                acceptComm = comm
                acceptEpoch = epoch
            }
            let comm = acceptComm, epoch = acceptEpoch
            let me = try Collectives.rankAndSize(comm).rank
            do {
                return try Collectives.broadcastBytes(mine, root: 0, rank: me, comm: comm) { r in
                    try Collectives.complete(&r, what: "waiting for client jobs", restMicros: 20_000) {
                        if engine.wasExcluded { return true }
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
    /// and returns the verdict (0 accept, 1 refuse, 2 stop, 3 refuse: no valid hello came,
    /// 4 commit: answered by the caller once every rank committed).
    func judge(_ link: JobLink) -> UInt8 {
        var code = KVCode.ok
        var message = ""
        var verdict: UInt8 = 0
        do {
            let hello = try link.receive(tag: ServiceWire.helloTag, from: 0, maxBytes: ServiceWire.maxHelloBytes,
                                         seconds: min(timeout, 10), what: "a connecting client job's hello")
            var r = ByteReader(hello.bytes)
            let h = try ServiceWire.readHeader(&r)
            let presented = try r.read(count: r.remaining)
            guard h.kind == .hello || h.kind == .stop || h.kind == .commit else { throw KVFailure(.remote, "expected a hello, got \(h.kind)") }
            if !StoreServer.sameSecret(presented, secret) {
                code = .denied
                message = "wrong or missing secret (give the port file, or set ftkv_secret / FTKV_SECRET)"
                options.log("ftkv serve: refused a client job of \(link.remoteSize) ranks: \(presented.isEmpty ? "no" : "wrong") secret")
                verdict = 1
            } else if h.kind == .stop {
                message = "stopping"
                verdict = 2
            } else if h.kind == .commit && options.durable {
                return 4
            } else if h.kind == .commit {
                code = .misuse
                message = "this server keeps its store in memory (started without --dir): nothing to commit"
                verdict = 1
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
    func rotatePort() -> [UInt8] {
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

    func welcomeMessage(_ code: KVCode, _ message: String) throws -> MessageBuffer {
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
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}
