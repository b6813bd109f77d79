import CMPI
import FTKV
import FTKVCore
import Glibc

/// `ftkv bench-commit`: kv_commit bandwidth beside write+fsync bandwidth measured in the same run
/// on the same directory, plus the commit where nothing changed, the one where 1% of the keys
/// changed, and the restart load. Aggregates are total bytes over the slowest rank's time.
///   --mib N       MiB of values per rank (default 64)
///   --value-kib K value size (default 64 KiB)
///   --dir DIR     where to write (default ./ftkv-bench-data; emptied first, removed at the end)
///   --flush-dir D also copy each version to D (the second tier) in the background, and report
///                 how long after kv_commit returned the copy was complete
///   --keep        leave the store on disk (for --load-only on another number of ranks)
///   --load-only   only open the store left by an earlier --keep run and time the load
struct CommitBench {
    static func run(arguments: [String]) -> Int32 {
        var mib = 64, valueKiB = 64, dir = "ftkv-bench-data", keep = false, loadOnly = false
        var flushDir: String?
        var i = 0
        while i < arguments.count {
            let value = i + 1 < arguments.count ? arguments[i + 1] : nil
            switch arguments[i] {
            case "--mib": if let v = value.flatMap({ Int($0) }), v > 0 { mib = v; i += 1 } else { return usage() }
            case "--value-kib": if let v = value.flatMap({ Int($0) }), v > 0, v <= 1024 { valueKiB = v; i += 1 } else { return usage() }
            case "--dir": if let v = value { dir = v; i += 1 } else { return usage() }
            case "--flush-dir": if let v = value { flushDir = v; i += 1 } else { return usage() }
            case "--keep": keep = true
            case "--load-only": loadOnly = true
            default: return usage()
            }
            i += 1
        }
        return runUnderMPI("bench-commit") {
            let bench = CommitBench(bytesPerRank: mib << 20, valueBytes: valueKiB << 10, dir: dir, flushDir: flushDir)
            if loadOnly { try bench.load() } else { try bench.run(keep: keep) }
        }
    }

    static func usage() -> Int32 {
        FileHandle.standardError("usage: ftkv bench-commit [--mib N] [--value-kib K] [--dir DIR] [--flush-dir DIR] [--keep | --load-only]")
        return 2
    }

    let bytesPerRank: Int
    let valueBytes: Int
    let dir: String
    let flushDir: String?
    let rank = MPIEnvironment.rank
    let size = MPIEnvironment.size
    var keysPerRank: Int { bytesPerRank / valueBytes }
    var options: [String: String] {
        var o = ["ftkv_dir": dir, "ftkv_keep": "2"]
        if let flushDir { o["ftkv_flush_dir"] = flushDir }
        return o
    }

    /// Seconds of the slowest rank for `body`, started together.
    func timed(_ body: () throws -> Void) rethrows -> Double {
        MPIEnvironment.barrier()
        let t0 = now()
        try body()
        var mine = now() - t0
        var slowest = 0.0
        MPI_Allreduce(&mine, &slowest, 1, cmpi_double(), cmpi_op_max(), cmpi_comm_world())
        return slowest
    }

    func line(_ label: String, _ text: String) {
        if rank == 0 { print(label.padding(50) + text) }
    }

    func mibps(_ bytes: Double, _ seconds: Double) -> String { Format.fixed(bytes / seconds / 1_048_576, 0) + " MiB/s" }

    func fill(_ buffer: UnsafeMutableRawPointer, key: Int, generation: Int) {
        var x = UInt64(key) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(generation)
        let words = buffer.bindMemory(to: UInt64.self, capacity: valueBytes / 8)
        for w in 0..<(valueBytes / 8) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            words[w] = x
        }
    }

    func key(_ i: Int, owner: Int) -> [UInt8] { Array("c/\(owner)/\(i)".utf8) }

    func run(keep: Bool) throws {
        if rank == 0 { FileSystem.removeTree(dir + "/bench-commit"); FileSystem.removeTree(dir + "/baseline") }
        MPIEnvironment.barrier()
        let store = try KVStore(name: "bench-commit", options: options)
        let replicas = Int(try store.stat(.replicas))
        let data = Double(bytesPerRank) * Double(size)
        line("ftkv bench-commit: \(size) ranks, \(bytesPerRank >> 20) MiB per rank in \(valueBytes >> 10) KiB values, r = \(replicas)", "")
        line("  directory", dir)

        // Baseline: each rank writes and fsyncs what a commit writes per rank (r copies of its
        // share). This VM's disk swings by 3x within a minute, so baseline and full commit
        // alternate, three rounds, and the medians are compared.
        try FileSystem.makeDirectories(dir + "/baseline")
        let chunk = 8 << 20
        guard let buffer = malloc(chunk) else { throw KVFailure(.noMemory, "no buffer") }
        defer { free(buffer) }
        memset(buffer, 0x5a, chunk)
        let baselineBytes = bytesPerRank * replicas
        func baseline() throws -> Double {
            let t = try timed {
                let path = dir + "/baseline/r\(rank)"
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                guard fd >= 0 else { throw KVFailure(.io, "cannot create \(path)") }
                var left = baselineBytes
                while left > 0 {
                    let n = write(fd, buffer, min(left, chunk))
                    guard n > 0 else { close(fd); throw KVFailure(.io, "write failed") }
                    left -= n
                }
                fsync(fd)
                close(fd)
            }
            unlink(dir + "/baseline/r\(rank)")
            return t
        }

        // Every round rewrites every value (so the commit writes a whole new base file), fences,
        // then times the commit and the baseline.
        guard let value = malloc(valueBytes) else { throw KVFailure(.noMemory, "no buffer") }
        defer { free(value) }
        var baseTimes: [Double] = []
        var fullTimes: [Double] = []
        var version: UInt64 = 0
        for round in 0..<3 {
            for i in 0..<keysPerRank {
                fill(value, key: i, generation: round)
                try key(i, owner: rank).withUnsafeBytes { k in try store.put(key: k, value: UnsafeRawBufferPointer(start: value, count: valueBytes)) }
            }
            try store.fence()
            fullTimes.append(try timed { version = try store.commit() })
            baseTimes.append(try baseline())
        }
        FileSystem.removeTree(dir + "/baseline")
        let tBase = baseTimes.sorted()[1]
        let tFull = fullTimes.sorted()[1]
        let baseAggregate = Double(baselineBytes) * Double(size) / tBase
        let ratio = data / tFull / (baseAggregate / Double(replicas))
        func ms(_ ts: [Double]) -> String { ts.map { Format.fixed($0 * 1e3, 0) }.joined(separator: ", ") + " ms" }
        line("  write+fsync (\(replicas) x \(bytesPerRank >> 20) MiB per rank)", "median of 3: \(mibps(Double(baselineBytes), tBase)) per rank, \(mibps(Double(baselineBytes) * Double(size), tBase)) aggregate (\(ms(baseTimes)))")
        line("  write+fsync aggregate / r (the target's basis)", mibps(baseAggregate / Double(replicas), 1))
        line("  kv_commit, everything (\(bytesPerRank >> 20) MiB per rank)", "median of 3: \(mibps(Double(bytesPerRank), tFull)) per rank, \(mibps(data, tFull)) aggregate = \(Format.fixed(ratio * 100, 0))% of write+fsync/r, target >= 85% (\(ms(fullTimes)))")
        if flushDir != nil {
            // The copy runs behind the application; how long until every rank's part is there.
            let t = try timed { while try !store.flushed(version) { usleep(1000) } }
            line("  second tier: complete after kv_commit returned", "\(Format.fixed(t * 1e3, 1)) ms later (copied in the background)")
        }
        let tNothing = try timed { try store.commit() }
        line("  kv_commit, nothing changed", "\(Format.fixed(tNothing * 1e3, 1)) ms")
        let changed = max(1, keysPerRank / 100)
        for i in 0..<changed {
            fill(value, key: i * 100, generation: 1)
            try key(i * 100, owner: rank).withUnsafeBytes { k in try store.put(key: k, value: UnsafeRawBufferPointer(start: value, count: valueBytes)) }
        }
        let tOne = try timed { try store.commit() }
        line("  kv_commit, 1% of the keys changed", "\(Format.fixed(tOne * 1e3, 1)) ms")
        try store.close()

        // Restart: open loads the newest version (same number of ranks).
        try load()
        if !keep && rank == 0 {
            for base in [dir] + (flushDir.map { [$0] } ?? []) {
                let store = StoreDirectory(base: base, store: "bench-commit")
                for v in store.scan() { FileSystem.removeTree(store.versionPath(v.number)) }
                FileSystem.removeTree(store.path)
            }
        }
    }

    /// Times kv_open of the store on disk (the load) and checks a sample of the values.
    func load() throws {
        var store: KVStore?
        let t = try timed { store = try KVStore(name: "bench-commit", options: options) }
        guard let store else { return }
        let keys = Double(try store.stat(.localKeys))
        var total = 0.0
        var mine = keys
        MPI_Allreduce(&mine, &total, 1, cmpi_double(), cmpi_op_sum(), cmpi_comm_world())
        let replicas = Double(try store.stat(.replicas))
        let loaded = total / replicas * Double(valueBytes)
        line("  restart: kv_open loading version \(try store.stat(.version)) on \(size) ranks", "\(Format.fixed(t * 1e3, 1)) ms: \(mibps(loaded, t)) aggregate (\(Format.fixed(loaded / 1_048_576, 0)) MiB of values)")
        try store.close()
    }
}
