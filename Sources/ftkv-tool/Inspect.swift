import FTKVCore
import Glibc

/// `ftkv inspect DIR...`: what is on disk, from the manifests (no data file is read): versions,
/// ranks and nodes, keys, sizes, where each rank's file is, and how the copies were placed.
enum Inspect {
    static func run(arguments: [String]) -> Int32 {
        let dirs = arguments.filter { !$0.hasPrefix("-") }
        guard !dirs.isEmpty, dirs.count == arguments.count else {
            fputs("usage: ftkv inspect DIR...   (an ftkv_dir, or a store's directory; several for per-node directories)\n", stderr)
            return 64
        }
        guard let stores = StoreFiles.find(in: dirs) else { return 66 }
        if stores.isEmpty { print("no ftkv stores under \(dirs.joined(separator: " "))") }
        for store in stores {
            print("store '\(store.name)' in \(store.directories.map { $0.path }.joined(separator: ", "))")
            for v in store.versions() {
                guard let m = v.manifest else {
                    print("  version \(v.number): incomplete (an interrupted commit: no intact manifest); a restart ignores it")
                    for d in v.damagedManifests { print("    damaged manifest copy: \(d)") }
                    continue
                }
                let bytes = m.files.reduce(UInt64(0)) { $0 + $1.bytes }
                print("  version \(m.version): complete, committed \(Format.time(m.created)) by \(m.ranks) ranks on \(Set(m.nodeOfRank).count) node(s), "
                      + "\(m.replicas) copies per key, \(m.keys) keys, \(Format.bytes(bytes)) on disk")
                for d in v.damagedManifests { print("    damaged manifest copy: \(d)") }
                let shares = m.placement?.primaryShares() ?? [:]
                for f in m.files {
                    let holders = store.directories.filter { FileSystem.fileSize($0.dataPath(m.version, rank: f.rank)) != nil }
                    let share = shares[m.memberOfRank[f.rank]].map { ", primary for " + Format.fixed($0 * 100, 1) + "% of the hash space" } ?? ""
                    let reused = f.base.written != m.version ? " (base file of version \(f.base.written), hard-linked)" : ""
                    let deltas = f.deltas.isEmpty ? "" : " + \(f.deltas.count) delta(s) of versions " + f.deltas.map { String($0.written) }.joined(separator: ",")
                        + " (\(Format.bytes(f.deltas.reduce(0) { $0 + $1.bytes })), \(f.deltas.reduce(0) { $0 + $1.records }) records)"
                    let member = m.memberOfRank[f.rank] == Int32(f.rank) ? "" : ", member \(m.memberOfRank[f.rank])"
                    print("    rank \(f.rank) (node \(m.nodeOfRank[f.rank])\(member)): \(StoreDirectory.dataFileName(rank: f.rank)) "
                          + "\(Format.bytes(f.base.bytes)), \(f.base.records) records\(reused)\(deltas); \(f.primaryRecords) keys as primary\(share); "
                          + (holders.isEmpty ? "MISSING" : "in " + holders.map { $0.path }.joined(separator: ", ")))
                }
                if let p = m.placement {
                    let sets = p.replicaSetShares().sorted { $0.value > $1.value }.prefix(8)
                    print("    placement: copies of a key go to (share of keys): "
                          + sets.map { "{" + $0.key.map(String.init).joined(separator: ",") + "} " + Format.fixed($0.value * 100, 1) + "%" }
                          .joined(separator: ", ") + (p.replicaSetShares().count > 8 ? ", ..." : ""))
                }
            }
        }
        return 0
    }
}
