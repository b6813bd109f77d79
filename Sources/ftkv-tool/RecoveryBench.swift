import CMPI
import FTKV
import FTKVCore
import Glibc

/// `ftkv bench-recovery`: what online recovery costs. Under `mpirun --enable-recovery -n N`
/// (N >= 3): every rank puts MiB of values and fences; the last rank SIGKILLs itself; the
/// survivors time how long until the store is usable again, split into detection plus agreement
/// (up to the decision) and shrink plus re-replication (KV_STAT_RECOVERY_MICROS), and the
/// re-replication throughput (KV_STAT_RECOVERY_BYTES over that time) beside the MPI bandwidth
/// measured between two ranks, the rate MPI itself reaches exchanging as much among the
/// survivors-to-be, and the first-touch rate of fresh memory (where restored copies land
/// without ftkv_recovery_reserve), all in the same run. Run it with OMPI_MCA_async_mpi_finalize=1 (a dead
/// rank can hang Open MPI 4.1's MPI_Finalize).
///   --mib N        MiB of values per rank (default 64)
///   --value-kib K  value size (default 64)
///   --heartbeat S, --suspect-after S   ftkv_heartbeat, ftkv_suspect_after (library defaults)
struct RecoveryBench {
    static func run(arguments: [String]) -> Int32 {
        var mib = 64, valueKiB = 64
        var options: [String: String] = [:]
        var i = 0
        while i < arguments.count {
            let value = i + 1 < arguments.count ? arguments[i + 1] : nil
            switch arguments[i] {
            case "--mib": if let v = value.flatMap({ Int($0) }), v > 0 { mib = v; i += 1 } else { return usage() }
            case "--value-kib": if let v = value.flatMap({ Int($0) }), v > 0, v <= 1024 { valueKiB = v; i += 1 } else { return usage() }
            case "--heartbeat": if let v = value { options["ftkv_heartbeat"] = v; i += 1 } else { return usage() }
            case "--suspect-after": if let v = value { options["ftkv_suspect_after"] = v; i += 1 } else { return usage() }
            default: return usage()
            }
            i += 1
        }
        return runUnderMPI("bench-recovery") {
            guard MPIEnvironment.size >= 3 else { throw ToolError("needs 3 or more ranks (mpirun --enable-recovery)") }
            try RecoveryBench(bytesPerRank: mib << 20, valueBytes: valueKiB << 10, options: options).run()
        }
    }

    static func usage() -> Int32 {
        FileHandle.standardError("usage: mpirun --enable-recovery -n N ftkv bench-recovery [--mib N] [--value-kib K] [--heartbeat S] [--suspect-after S]")
        return 2
    }

    let bytesPerRank: Int
    let valueBytes: Int
    let options: [String: String]
    let rank = MPIEnvironment.rank
    let size = MPIEnvironment.size

    /// MPI bandwidth between ranks 0 and 1 (8 MiB messages there and back), in bytes/s.
    func mpiBandwidth() -> Double {
        let bytes = 8 << 20, rounds = 10
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { buffer.deallocate() }
        memset(buffer, 1, bytes)
        MPIEnvironment.barrier()
        let t0 = now()
        for _ in 0..<rounds {
            if rank == 0 {
                MPI_Send(buffer, Int32(bytes), cmpi_byte(), 1, 9, cmpi_comm_world())
                MPI_Recv(buffer, Int32(bytes), cmpi_byte(), 1, 9, cmpi_comm_world(), cmpi_status_ignore())
            } else if rank == 1 {
                MPI_Recv(buffer, Int32(bytes), cmpi_byte(), 0, 9, cmpi_comm_world(), cmpi_status_ignore())
                MPI_Send(buffer, Int32(bytes), cmpi_byte(), 0, 9, cmpi_comm_world())
            }
        }
        var rate = rank == 0 ? Double(2 * rounds * bytes) / (now() - t0) : 0
        MPI_Bcast(&rate, 1, cmpi_double(), 0, cmpi_comm_world())
        return rate
    }

    /// What MPI itself reaches for re-replication's pattern: every rank but the victim (the
    /// last, asleep meanwhile rather than polling) sends `bytesPerSender`, spread evenly over the
    /// others, while receiving as much, into memory already faulted in. Best of three, in bytes
    /// per second per sender.
    func exchangeBandwidth(bytesPerSender: Int) -> Double {
        let victim = Int32(size - 1), done: Int32 = 77
        var rate = 0.0
        var sub: MPI_Comm? = cmpi_comm_null()
        MPI_Comm_split(cmpi_comm_world(), rank == Int(victim) ? MPI_UNDEFINED : 0, Int32(rank), &sub)
        if rank == Int(victim) {
            var flag: Int32 = 0
            while flag == 0 {
                usleep(1000)
                MPI_Iprobe(0, done, cmpi_comm_world(), &flag, cmpi_status_ignore())
            }
            MPI_Recv(&rate, 1, cmpi_double(), 0, done, cmpi_comm_world(), cmpi_status_ignore())
            return rate
        }
        let peers = size - 2
        let each = bytesPerSender / peers
        let send = UnsafeMutableRawPointer.allocate(byteCount: each * peers, alignment: 64)
        let receive = UnsafeMutableRawPointer.allocate(byteCount: each * peers, alignment: 64)
        defer { send.deallocate(); receive.deallocate() }
        memset(send, 1, each * peers)
        memset(receive, 0, each * peers)
        var requests = [MPI_Request?](repeating: cmpi_request_null(), count: 2 * peers)
        var best = Double.infinity
        for _ in 0..<3 {
            MPI_Barrier(sub)
            let t0 = now()
            var k = 0
            for peer in 0..<Int32(size - 1) where peer != Int32(rank) {
                let slot = k / 2
                MPI_Irecv(receive + slot * each, Int32(each), cmpi_byte(), peer, 5, sub, &requests[k])
                MPI_Isend(send + slot * each, Int32(each), cmpi_byte(), peer, 5, sub, &requests[k + 1])
                k += 2
            }
            MPI_Waitall(Int32(k), &requests, nil)
            MPI_Barrier(sub)
            var took = now() - t0, slowest = 0.0
            MPI_Allreduce(&took, &slowest, 1, cmpi_double(), cmpi_op_max(), sub)
            best = min(best, slowest)
        }
        rate = Double(each * peers) / best
        if rank == 0 { MPI_Send(&rate, 1, cmpi_double(), victim, done, cmpi_comm_world()) }
        MPI_Comm_free(&sub)
        return rate
    }

    func run() throws {
        let bandwidth = mpiBandwidth()
        // A failure leaves the victim's copies (2 x its share) to be restored by the survivors.
        let exchange = exchangeBandwidth(bytesPerSender: 2 * bytesPerRank / (size - 1))
        // Restored copies land in new table memory on their receivers: first touch bounds them,
        // on the pages the store's tables use (ftkv_huge_pages).
        let hugePages = (try? StoreConfig.parse(given: options).hugePages.useHugePages) ?? true
        let (touch, mapping) = firstTouch(bytes: 64 << 20, hugePages: hugePages)
        if let mapping { munmap(mapping, 64 << 20) }
        let store = try KVStore(name: "bench-recovery", options: options.merging(["ftkv_load": "none", "ftkv_replicas": "2"]) { a, _ in a })
        let value = [UInt8](repeating: UInt8(truncatingIfNeeded: rank &+ 1), count: valueBytes)
        for k in 0..<(bytesPerRank / valueBytes) { try store.put("r\(rank)/\(k)", value) }
        MPIEnvironment.barrier()
        let f0 = now()
        try store.fence()
        var fenceTime = now() - f0
        var slowestFence = 0.0
        MPI_Allreduce(&fenceTime, &slowestFence, 1, cmpi_double(), cmpi_op_max(), cmpi_comm_world())
        fenceTime = slowestFence
        let held = try store.stat(.localBytes)
        let victim = size - 1
        MPIEnvironment.barrier()
        if rank == victim { kill(getpid(), SIGKILL) }
        let t0 = now()
        // Until a call reports the view change (it returns only once the store is usable again).
        var done = false
        while !done {
            do {
                _ = try store.stat(.epoch)
                usleep(200)
            } catch let e as KVError where e.code == .procFailed {
                done = true
            }
        }
        let usable = now() - t0
        let micros = try store.stat(.recoveryMicros)
        let sent = try store.stat(.recoveryBytes)
        let survivors = try store.communicator()
        var mine = [Double(micros) / 1e6, usable, Double(sent)], worst = [0.0, 0.0, 0.0], total = 0.0
        MPI_Allreduce(&mine, &worst, 3, cmpi_double(), cmpi_op_max(), survivors.handle)
        MPI_Allreduce(&mine[2], &total, 1, cmpi_double(), cmpi_op_sum(), survivors.handle)
        var heldMax = Double(held), heldAll = 0.0
        MPI_Allreduce(&heldMax, &heldAll, 1, cmpi_double(), cmpi_op_max(), survivors.handle)
        // Peak resident memory: the table plus what re-replication needed beyond it.
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        var peak = Double(usage.ru_maxrss) * 1024, peakAll = 0.0
        MPI_Allreduce(&peak, &peakAll, 1, cmpi_double(), cmpi_op_max(), survivors.handle)
        var survivorRank: Int32 = 0
        MPI_Comm_rank(survivors.handle, &survivorRank)
        if survivorRank == 0 {
            let install = worst[0], until = worst[1]
            func mib(_ b: Double) -> String { Format.fixed(b / 1_048_576, 1) + " MiB" }
            print("ftkv bench-recovery: \(size) ranks, \(bytesPerRank >> 20) MiB of \(valueBytes >> 10) KiB values per rank, 2 copies; rank \(victim) SIGKILLed")
            print("  baseline: MPI bandwidth, 8 MiB messages between two ranks".padding(62) + Format.fixed(bandwidth / 1e9, 2) + " GB/s")
            print("  baseline: MPI exchange among the \(size - 1) survivors, \((2 * bytesPerRank / (size - 1)) >> 20) MiB from each".padding(62)
                  + Format.fixed(exchange / 1e9, 2) + " GB/s per sender")
            print("  baseline: first touch of fresh memory (64 MiB, \(hugePages ? "huge" : "4 KiB") pages)".padding(62) + Format.fixed(touch, 2) + " GB/s")
            print("  the first fence, shipping \(bytesPerRank >> 20) MiB per rank to its other replica".padding(62)
                  + Format.fixed(fenceTime, 3) + " s = " + Format.fixed(Double(bytesPerRank) / fenceTime / 1e9, 2) + " GB/s per rank")
            print("  kill -> store usable again (slowest survivor)".padding(62) + Format.fixed(until, 3) + " s")
            print("    detection + agreement".padding(62) + Format.fixed(max(until - install, 0), 3) + " s")
            print("    shrink + re-replication (slowest survivor)".padding(62) + Format.fixed(install, 3) + " s")
            print("  copies restored: \(mib(total)) in all, at most \(mib(worst[2])) from one rank (each held \(mib(heldAll)))")
            print("  peak resident memory of a survivor (the process: table, MPI, buffers)".padding(62) + mib(peakAll))
            let rate = install > 0 ? worst[2] / install : 0
            print("  re-replication throughput of the busiest sender".padding(62) + Format.fixed(rate / 1e9, 2) + " GB/s = "
                  + Format.fixed(bandwidth > 0 ? 100 * rate / bandwidth : 0, 0) + "% of MPI bandwidth (target >= 50%), "
                  + Format.fixed(exchange > 0 ? 100 * rate / exchange : 0, 0) + "% of the survivors' MPI exchange, "
                  + Format.fixed(touch > 0 ? 100 * rate / 1e9 / touch : 0, 0) + "% of first touch")
        }
        try store.close()
    }
}
