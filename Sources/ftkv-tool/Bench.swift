import CMPI
import FTKV
import FTKVCore
import Glibc

/// `ftkv bench`: the store's hot paths beside the physical baselines measured in the same run
/// (memcpy bandwidth, polled MPI ping-pong), with 16-byte keys and 128-byte values.
/// Figures are per rank; the slowest rank is reported, the mean beside it. `--json PATH` also
/// writes every figure to PATH (scripts/bench-compare.py compares two such files).
struct Bench {
    static let keyBytes = 16
    static let valueBytes = 128

    static func run(arguments: [String]) -> Int32 {
        var keys = 200_000
        var gets = 200_000
        var jsonPath: String?
        var i = 0
        while i < arguments.count {
            let value = i + 1 < arguments.count ? Int(arguments[i + 1]) : nil
            switch (arguments[i], value) {
            case ("--keys", let n?) where n > 0: keys = n
            case ("--gets", let n?) where n > 0: gets = n
            case ("--json", _) where i + 1 < arguments.count: jsonPath = arguments[i + 1]
            default:
                FileHandle.standardError("ftkv bench: unknown or bad option '\(arguments[i])'")
                return 2
            }
            i += 2
        }
        let level = MPIEnvironment.initialize(threadLevel: .multiple)
        defer { MPIEnvironment.finalize() }
        do {
            let bench = Bench(keys: keys, gets: gets, level: level)
            try bench.run()
            if let jsonPath, MPIEnvironment.rank == 0 { try bench.writeJSON(to: jsonPath) }
            return 0
        } catch {
            FileHandle.standardError("ftkv bench: rank \(MPIEnvironment.rank): \(error)")
            return 1
        }
    }

    let keys: Int
    let gets: Int
    let level: MPIEnvironment.ThreadLevel
    let rank = MPIEnvironment.rank
    let size = MPIEnvironment.size
    /// Every figure reported, for --json (filled on rank 0).
    final class Figures {
        var all: [(label: String, unit: String, worst: Double, mean: Double, target: String)] = []
    }
    let figures = Figures()

    init(keys: Int, gets: Int, level: MPIEnvironment.ThreadLevel) {
        self.keys = keys
        self.gets = gets
        self.level = level
    }

    /// Rates are better high; times and CPU shares low.
    static func higherIsBetter(_ unit: String) -> Bool { unit == "ops/s" || unit == "GB/s" || unit == "% of fastest" }

    /// The slowest rank's figure (the lowest rate, or the highest time) and the mean.
    func across(_ x: Double, higherIsBetter: Bool) -> (worst: Double, mean: Double) {
        var mine = x
        var worst = 0.0
        var sum = 0.0
        MPI_Allreduce(&mine, &worst, 1, cmpi_double(), higherIsBetter ? cmpi_op_min() : cmpi_op_max(), cmpi_comm_world())
        MPI_Allreduce(&mine, &sum, 1, cmpi_double(), cmpi_op_sum(), cmpi_comm_world())
        return (worst, sum / Double(size))
    }

    func report(_ label: String, _ x: Double, unit: String, target: String = "") {
        let (lo, mean) = across(x, higherIsBetter: Bench.higherIsBetter(unit))
        guard rank == 0 else { return }
        // An indented line belongs to the one above it ("  round trip").
        let name = label.hasPrefix(" ") ? (figures.all.last.map { $0.label + ": " } ?? "") + String(label.drop(while: { $0 == " " })) : label
        figures.all.append((name, unit, lo, mean, target))
        func fmt(_ v: Double) -> String {
            if unit == "ops/s" {
                return v >= 1e6 ? String(format2(v / 1e6)) + " M" : String(format2(v / 1e3)) + " k"
            }
            return format2(v)
        }
        let line = "\(label.padding(42))\(fmt(lo).leftPad(10)) \(unit.padding(12)) (mean \(fmt(mean)))"
        print(target.isEmpty ? line : "\(line)   target \(target)")
    }

    /// Writes the run's settings and every figure as one JSON object (rank 0).
    func writeJSON(to path: String) throws {
        func quoted(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where u.value < 0x20: out += "\\u00" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        }
        func number(_ x: Double) -> String { x.isFinite ? "\(x)" : "null" }
        var text = "{\"tool\": \"ftkv bench\", \"version\": \(quoted(LibraryVersion.string)), \"time\": \(Int(time(nil))), "
        text += "\"ranks\": \(size), \"thread_level\": \(quoted("\(level)")), \"keys\": \(keys), \"gets\": \(gets), "
        text += "\"key_bytes\": \(Bench.keyBytes), \"value_bytes\": \(Bench.valueBytes), \"figures\": ["
        text += figures.all.map { f in
            "\n  {\"name\": \(quoted(f.label)), \"unit\": \(quoted(f.unit)), \"higher_is_better\": \(Bench.higherIsBetter(f.unit)), "
                + "\"slowest_rank\": \(number(f.worst)), \"mean\": \(number(f.mean)), \"target\": \(quoted(f.target))}"
        }.joined(separator: ",")
        text += "\n]}\n"
        guard let file = fopen(path, "w") else { throw ToolError("cannot write \(path): \(String(cString: strerror(errno)))") }
        let wrote = fputs(text, file) >= 0
        guard fclose(file) == 0, wrote else { throw ToolError("cannot write \(path): \(String(cString: strerror(errno)))") }
    }

    /// Fills key `index` of writer `owner` ("b" + owner + index, 16 bytes) into `out`.
    static func makeKey(_ out: UnsafeMutableRawPointer, owner: Int, index: Int) {
        var text = Array("b\(owner)/\(index)".utf8)
        if text.count < keyBytes { text += Array(repeating: UInt8(ascii: "."), count: keyBytes - text.count) }
        memcpy(out, text, keyBytes)
    }

    func run() throws {
        if rank == 0 {
            print("ftkv bench: \(size) ranks, MPI thread level \(level), \(keys) keys/rank, \(gets) gets/rank, \(Bench.keyBytes) B keys, \(Bench.valueBytes) B values")
            if let pages = try? StoreConfig.parse(given: [:]).hugePages {
                print("store tables on \(pages.useHugePages ? "huge" : "4 KiB") pages (ftkv_huge_pages=\(pages.rawValue))")
            }
        }
        baselines()
        // Small pages cost about the same every time; huge pages, on a VM that hands free memory
        // back to its host, are fast only right after another process freed some
        // (docs/benchmarks.md): the first interval follows them.
        let (smallGBps, small) = firstTouch(bytes: 16 << 20, hugePages: false)
        if let small { munmap(small, 16 << 20) }
        report("baseline: first touch of fresh memory, 4 KiB pages", smallGBps, unit: "GB/s")
        // Kept mapped until the first interval has run: releasing it earlier would hand that
        // interval 64 MiB of free huge pages, making it look faster than a real first checkpoint.
        var (touchGBps, touched) = firstTouch(bytes: 64 << 20)
        report("baseline: first touch of fresh memory", touchGBps, unit: "GB/s")
        let value = UnsafeMutableRawBufferPointer.allocate(byteCount: Bench.valueBytes, alignment: 8)
        defer { value.deallocate() }
        for j in 0..<Bench.valueBytes { value[j] = UInt8(truncatingIfNeeded: j &* 7 &+ rank) }
        let myKeys = UnsafeMutableRawBufferPointer.allocate(byteCount: keys * Bench.keyBytes, alignment: 8)
        defer { myKeys.deallocate() }
        for k in 0..<keys { Bench.makeKey(myKeys.baseAddress! + k * Bench.keyBytes, owner: rank, index: k) }
        func key(_ k: Int) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: myKeys[(k * Bench.keyBytes)..<((k + 1) * Bench.keyBytes)])
        }

        // Store with the default r = 2.
        let store = try KVStore(name: "bench", options: [:])
        let progress = try store.stat(.progressThread) == 1
        if rank == 0 { print("store: replicas \(try store.stat(.replicas)), progress thread \(progress ? "yes" : "no")") }

        // Two checkpoint intervals of the same keys: the first grows every table from empty, the
        // second is the steady state of an application that checkpoints repeatedly.
        var t0 = now()
        for interval in ["first interval", "next interval"] {
            MPIEnvironment.barrier()
            t0 = now()
            for k in 0..<keys { try store.put(key: key(k), value: UnsafeRawBufferPointer(value)) }
            let putSeconds = now() - t0
            report("put loop, \(interval)", Double(keys) / putSeconds, unit: "ops/s", target: ">= 2 M")
            t0 = now()
            try store.fence()
            let fenceSeconds = now() - t0
            report("put+fence, \(interval)", Double(keys) / (putSeconds + fenceSeconds), unit: "ops/s", target: ">= 1 M")
            if let touched { munmap(touched, 64 << 20) }
            touched = nil
        }

        // Local-owner gets: this rank's keys of which it holds a replica (with r < size, only
        // some of them), read in random order so the table is probed as a real workload would.
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Bench.valueBytes, alignment: 8)
        defer { out.deallocate() }
        var local: [Int32] = []
        for k in 0..<keys where try store.locate(key: key(k)).contains(Int32(rank)) { local.append(Int32(k)) }
        guard !local.isEmpty else { throw BenchError.missing }
        var rng = SplitMix(seed: UInt64(rank) + 1)
        local.shuffle(using: &rng)
        MPIEnvironment.barrier()
        t0 = now()
        for g in 0..<gets {
            guard case .found = try store.get(key: key(Int(local[g % local.count])), into: out) else {
                throw BenchError.missing
            }
        }
        report("local-owner get, all \(keys) keys", Double(gets) / (now() - t0), unit: "ops/s", target: ">= 5 M")
        // The same over a cache-sized subset (5,000 keys, about 1 MiB of records and slots).
        let hot = local.prefix(5_000)
        MPIEnvironment.barrier()
        t0 = now()
        for g in 0..<gets {
            guard case .found = try store.get(key: key(Int(hot[hot.startIndex + g % hot.count])), into: out) else {
                throw BenchError.missing
            }
        }
        report("local-owner get, 5000 hot keys", Double(gets) / (now() - t0), unit: "ops/s", target: ">= 5 M")
        try store.close()

        try remoteGets(value: UnsafeRawBufferPointer(value), out: out)
        try idleCost()
    }

    /// Remote-owner gets need keys held by no local replica: a store with r = 1, each rank
    /// reading keys whose single owner is another rank.
    func remoteGets(value: UnsafeRawBufferPointer, out: UnsafeMutableRawBufferPointer) throws {
        guard size > 1 else { return }
        let store = try KVStore(name: "bench-remote", options: ["ftkv_replicas": "1"])
        let key = UnsafeMutableRawBufferPointer.allocate(byteCount: Bench.keyBytes, alignment: 8)
        defer { key.deallocate() }
        let n = min(keys, 20_000)
        for k in 0..<n {
            Bench.makeKey(key.baseAddress!, owner: rank, index: k)
            try store.put(key: UnsafeRawBufferPointer(key), value: value)
        }
        try store.fence()
        // Keys written by the next rank that this rank does not hold.
        var remote: [[UInt8]] = []
        for k in 0..<n where remote.count < 4096 {
            Bench.makeKey(key.baseAddress!, owner: (rank + 1) % size, index: k)
            let bytes = Array(UnsafeRawBufferPointer(key))
            if try !store.locate(String(decoding: bytes, as: UTF8.self)).contains(Int32(rank)) { remote.append(bytes) }
        }
        // (With very few keys, possibly none: then there is nothing remote to time.)
        var none = remote.isEmpty ? 1 : 0
        var anyRankHasNone = 0
        MPI_Allreduce(&none, &anyRankHasNone, 1, cmpi_int(), cmpi_op_max(), cmpi_comm_world())
        guard anyRankHasNone == 0 else { try store.close(); return }
        /// `count` gets of those keys, round robin; returns their rate.
        func readRemote(_ count: Int) throws -> Double {
            let start = now()
            for g in 0..<count {
                try remote[g % remote.count].withUnsafeBytes { k in
                    guard case .found = try store.get(key: k, into: out) else { throw BenchError.missing }
                }
            }
            return Double(count) / (now() - start)
        }
        MPIEnvironment.barrier()
        let rate = try readRemote(gets)
        report("remote-owner get (r=1, all ranks at once)", rate, unit: "ops/s", target: ">= 100 k")
        report("  round trip", 1e6 / rate, unit: "us")

        // The same gets while their owner sits in a blocking MPI call of its own (Open MPI's
        // MPI_Barrier busy-polls its core): even ranks read while odd ranks wait, then the
        // reverse, so each rank has a figure. (Odd rank counts: the last rank reads from rank 0,
        // which reads at the same time; the line is skipped.)
        if size % 2 == 0 {
            let count = min(gets, 50_000)
            var mine = 0.0
            for readers in 0..<2 {
                MPIEnvironment.barrier()
                if rank % 2 == readers { mine = try readRemote(count) }
                MPIEnvironment.barrier()
            }
            report("remote-owner get, the owner in its own MPI_Barrier", mine, unit: "ops/s")
            var fastest = 0.0
            MPI_Allreduce(&mine, &fastest, 1, cmpi_double(), cmpi_op_max(), cmpi_comm_world())
            report("  slowest rank against the fastest", fastest > 0 ? 100 * mine / fastest : 0, unit: "% of fastest",
                   target: ">= 70 %")

            // The first get after its owner idled: the owner's application sleeps (no library
            // call), so its progress thread, backed off to its longest rest, must wake to answer.
            // The price of a low idle CPU; read it beside the ping-pong round trip.
            for gap in [0.1, 1.0] {
                var waits: [Double] = []
                for readers in 0..<2 {
                    for sample in 0..<3 {
                        MPIEnvironment.barrier()
                        if rank % 2 == readers {
                            usleep(UInt32(gap * 1e6))
                            let start = now()
                            try remote[sample % remote.count].withUnsafeBytes { k in
                                guard case .found = try store.get(key: k, into: out) else { throw BenchError.missing }
                            }
                            waits.append(now() - start)
                        } else {
                            usleep(UInt32(gap * 1e6) + 50_000)
                        }
                    }
                }
                waits.sort()
                report("remote-owner get after its owner idled \(gap) s", waits[waits.count / 2] * 1e3, unit: "ms (median)")
            }
        }
        try store.close()
    }

    /// CPU used by an open, idle store (its progress thread) while the application sleeps, beside
    /// the same measurement with no store open (MPI's own threads).
    func idleCost() throws {
        func cpuShareWhileSleeping() -> Double {
            let cpu0 = processCPUSeconds()
            let t0 = now()
            usleep(3_000_000)
            return (processCPUSeconds() - cpu0) / (now() - t0) * 100
        }
        report("baseline: CPU of an idle MPI process", cpuShareWhileSleeping(), unit: "% of a core")
        let store = try KVStore(name: "bench-idle")
        report("idle store: CPU while app sleeps 3 s", cpuShareWhileSleeping(), unit: "% of a core", target: "< 1 %")
        try store.close()
    }

    /// Physical baselines of this machine, now: memcpy bandwidth and polled MPI ping-pong.
    func baselines() {
        let bytes = 64 << 20
        let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        memset(a, 1, bytes)
        memset(b, 2, bytes)
        var t0 = now()
        for _ in 0..<10 { memcpy(b, a, bytes) }
        report("baseline: memcpy bandwidth", Double(bytes * 10) / (now() - t0) / 1e9, unit: "GB/s")
        t0 = now()
        let small = 1_000_000
        for i in 0..<small { memcpy(b + (i & 1023) * 144, a + ((i * 7) & 1023) * 144, 144) }
        report("baseline: memcpy of 144 B", Double(small) / (now() - t0), unit: "ops/s")
        a.deallocate()
        b.deallocate()
        report("baseline: dependent random read, 64 MiB", randomReadNanos(bytes: 64 << 20), unit: "ns")

        // Ping-pong in pairs (0-1, 2-3, ...), polled with MPI_Test + sched_yield like the store's waits.
        let partner = rank ^ 1
        var rtt = 0.0
        if partner < size {
            let rounds = 20_000
            var msg: UInt64 = 0
            MPIEnvironment.barrier()
            t0 = now()
            for _ in 0..<rounds {
                if rank & 1 == 0 {
                    polledSend(&msg, to: partner)
                    polledRecv(&msg, from: partner)
                } else {
                    polledRecv(&msg, from: partner)
                    polledSend(&msg, to: partner)
                }
            }
            rtt = (now() - t0) / Double(rounds) * 1e6
        } else {
            MPIEnvironment.barrier()
        }
        report("baseline: MPI ping-pong 8 B round trip", rtt, unit: "us")
    }

    /// A chain of dependent loads through a random cyclic permutation of cache lines: the time of
    /// one cache miss to memory, the physical floor of a lookup in a table larger than the caches
    /// (a get from a large store is two of them: the index slot, then the record).
    func randomReadNanos(bytes: Int) -> Double {
        let lines = bytes / 64
        let chain = UnsafeMutablePointer<Int>.allocate(capacity: lines * 8)
        defer { chain.deallocate() }
        var order = Array(0..<lines)
        var rng = SplitMix(seed: 7)
        order.shuffle(using: &rng)
        for i in 0..<lines { chain[order[i] * 8] = order[(i + 1) % lines] * 8 }
        var at = 0
        let steps = 2_000_000
        let t0 = now()
        for _ in 0..<steps { at = chain[at] }
        let ns = (now() - t0) / Double(steps) * 1e9
        if at == -1 { print("") } // keeps the chain live
        return ns
    }

    private func polledSend(_ msg: inout UInt64, to peer: Int) {
        var req: MPI_Request? = cmpi_request_null()
        MPI_Isend(&msg, 8, cmpi_byte(), Int32(peer), 1, cmpi_comm_world(), &req)
        poll(&req)
    }

    private func polledRecv(_ msg: inout UInt64, from peer: Int) {
        var req: MPI_Request? = cmpi_request_null()
        MPI_Irecv(&msg, 8, cmpi_byte(), Int32(peer), 1, cmpi_comm_world(), &req)
        poll(&req)
    }

    private func poll(_ req: inout MPI_Request?) {
        var flag: Int32 = 0
        while true {
            MPI_Test(&req, &flag, cmpi_status_ignore())
            if flag != 0 { return }
            sched_yield()
        }
    }
}

enum BenchError: Error { case missing }

/// A seeded generator: the same order every run.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

func format2(_ v: Double) -> String { Format.fixed(v, 2) }

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
