import CMPI
import FTKV
import FTKVCore
import Glibc

/// `ftkv bench-client ADDRESS [--ops N]`: a client job measuring a store server (`ftkv serve`):
/// put and get rates of 16-byte keys with 128-byte values, and MiB/s of 1 MiB values, beside what
/// the same run measures as baselines: a round trip through the server's serving loop without the
/// store (echo, 24-byte header and 1 MiB), an MPI ping-pong inside this job, and the same puts and
/// gets on an embedded store of this job (sequential consistency, as the server's).
struct ClientBench {
    static func run(arguments: [String]) -> Int32 {
        guard let address = arguments.first else { return usage() }
        var ops = 5000
        var i = 1
        while i < arguments.count {
            let value = i + 1 < arguments.count ? arguments[i + 1] : nil
            switch arguments[i] {
            case "--ops": if let v = value.flatMap({ Int($0) }), v > 0 { ops = v; i += 1 } else { return usage() }
            default: return usage()
            }
            i += 1
        }
        return runUnderMPI("bench-client") { try ClientBench(address: address, ops: ops).run() }
    }

    static func usage() -> Int32 {
        FileHandle.standardError("usage: mpirun -n N --ompi-server file:URI ftkv bench-client file:PORTFILE|NAME [--ops N]")
        return 2
    }

    let address: String
    let ops: Int
    let rank = MPIEnvironment.rank
    let size = MPIEnvironment.size

    /// Slowest rank and mean, printed by rank 0 (for a time in us the slowest is the largest).
    func report(_ label: String, _ x: Double, unit: String) {
        var mine = x, low = 0.0, sum = 0.0
        MPI_Reduce(&mine, &low, 1, cmpi_double(), unit == "us" ? cmpi_op_max() : cmpi_op_min(), 0, cmpi_comm_world())
        MPI_Reduce(&mine, &sum, 1, cmpi_double(), cmpi_op_sum(), 0, cmpi_comm_world())
        guard rank == 0 else { return }
        let mean = sum / Double(size)
        func fmt(_ v: Double) -> String { unit == "ops/s" && v >= 1e3 ? format2(v / 1e3) + " k" : format2(v) }
        print("\(label.padding(46))\(fmt(low).leftPad(10)) \(unit.padding(8)) (mean \(fmt(mean)))")
    }

    func run() throws {
        if rank == 0 { print("ftkv bench-client: \(size) client ranks, \(ops) ops per rank, 16 B keys, 128 B values; 1 MiB values x 32") }
        let small = [UInt8](repeating: 7, count: 128)
        let big = [UInt8](repeating: 3, count: 1 << 20)
        var out = [UInt8](repeating: 0, count: 1 << 20)
        func key(_ k: Int) -> [UInt8] {
            var text = Array("c\(rank)/\(k)".utf8)
            if text.count < 16 { text += Array(repeating: UInt8(ascii: "."), count: 16 - text.count) }
            return text
        }
        let keys = (0..<ops).map(key)

        // Baseline: MPI ping-pong in this job (ranks 0 and 1), polled.
        if size >= 2 {
            var msg: UInt64 = 0
            MPIEnvironment.barrier()
            let t0 = now()
            let rounds = 20_000
            if rank < 2 {
                for _ in 0..<rounds {
                    if rank == 0 { polled(send: true, &msg, peer: 1); polled(send: false, &msg, peer: 1) }
                    else { polled(send: false, &msg, peer: 0); polled(send: true, &msg, peer: 0) }
                }
            }
            report("baseline: MPI ping-pong 8 B in this job", (now() - t0) / Double(rounds) * 1e6, unit: "us")
        }

        let remote = try RemoteStore.connect(to: address, comm: cmpi_comm_world(), options: [:])
        // Baseline: the serving loop's round trip without the store.
        let header: [UInt8] = []
        MPIEnvironment.barrier()
        var t0 = now()
        for _ in 0..<ops { _ = try header.withUnsafeBytes { try remote.echo($0) } }
        report("baseline: echo through the server, round trip", (now() - t0) / Double(ops) * 1e6, unit: "us")
        MPIEnvironment.barrier()
        t0 = now()
        for _ in 0..<32 { _ = try big.withUnsafeBytes { try remote.echo($0) } }
        report("baseline: echo of 1 MiB through the server", 2 * 32 / (now() - t0), unit: "MiB/s")

        try measure("client", remote, keys: keys, small: small, big: big, out: &out)
        try remote.close()

        let embedded = try Engine.open(comm: cmpi_comm_world(), name: "bench-client-embedded",
                                       options: ["ftkv_consistency": "sequential", "ftkv_replicas": "\(min(2, size))"])
        try measure("embedded (this job, sequential)", embedded, keys: keys, small: small, big: big, out: &out)
        try embedded.close()
    }

    func measure(_ what: String, _ store: KeyValueStore, keys: [[UInt8]], small: [UInt8], big: [UInt8], out: inout [UInt8]) throws {
        MPIEnvironment.barrier()
        var t0 = now()
        for k in keys { try k.withUnsafeBytes { kb in try small.withUnsafeBytes { try store.put(key: kb, value: $0) } } }
        report("\(what): put", Double(keys.count) / (now() - t0), unit: "ops/s")
        MPIEnvironment.barrier()
        t0 = now()
        for k in keys {
            let outcome = try k.withUnsafeBytes { kb in try out.withUnsafeMutableBytes { try store.get(key: kb, into: $0) } }
            guard outcome == .found(length: small.count), out[0] == 7 else { throw ToolError("\(what): a get came back wrong: \(outcome)") }
        }
        report("\(what): get", Double(keys.count) / (now() - t0), unit: "ops/s")
        MPIEnvironment.barrier()
        t0 = now()
        let bigKey = Array("big/\(rank)".utf8)
        for _ in 0..<32 { try bigKey.withUnsafeBytes { kb in try big.withUnsafeBytes { try store.put(key: kb, value: $0) } } }
        report("\(what): put 1 MiB", 32 / (now() - t0), unit: "MiB/s")
        MPIEnvironment.barrier()
        t0 = now()
        for _ in 0..<32 {
            let outcome = try bigKey.withUnsafeBytes { kb in try out.withUnsafeMutableBytes { try store.get(key: kb, into: $0) } }
            guard outcome == .found(length: big.count) else { throw ToolError("\(what): a 1 MiB get came back wrong: \(outcome)") }
        }
        report("\(what): get 1 MiB", 32 / (now() - t0), unit: "MiB/s")
    }

    private func polled(send: Bool, _ msg: inout UInt64, peer: Int) {
        var req: MPI_Request? = cmpi_request_null()
        if send { MPI_Isend(&msg, 8, cmpi_byte(), Int32(peer), 3, cmpi_comm_world(), &req) }
        else { MPI_Irecv(&msg, 8, cmpi_byte(), Int32(peer), 3, cmpi_comm_world(), &req) }
        var flag: Int32 = 0
        while true {
            MPI_Test(&req, &flag, cmpi_status_ignore())
            if flag != 0 { return }
            sched_yield()
        }
    }
}
