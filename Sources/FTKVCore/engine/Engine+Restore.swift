import Glibc

/// Restart: kv_open of a store with committed versions loads one (ftkv_load, the newest complete
/// by default) on any number of ranks. Each old rank's data file is read once, by a rank that
/// sees it; each record is shipped to its replicas under the new placement from the first of its
/// old replicas whose file is intact; a damaged file's records come from its partners' files.
/// Finally the keys loaded are counted against the manifest: a shortfall is KV_EDATALOSS.
extension Engine {
    /// Collective, inside kv_open before the handle is returned. Every rank decides from the same
    /// gathered data, so every rank throws the same failure.
    func restoreLocked() throws {
        let size = Int(transport.size)
        let comm = transport.comm
        let wait = { (r: inout MPIRequest) in try self.completeLocked(&r, what: "kv_open: loading the committed store") }

        // 1. Which version, and its manifest from a rank that has an intact copy.
        let versions = checkpoints.scan()
        var mine = RestartPlan.DirectoryReport()
        mine.newestComplete = versions.last(where: { $0.isComplete })?.number ?? 0
        mine.newestSeen = versions.last?.number ?? 0
        if case .version(let v) = config.load, versions.contains(where: { $0.number == v && $0.isComplete }) { mine.hasRequested = 1 }
        let reports = try Collectives.allgatherFixed(mine, comm: comm, size: size, wait: wait)
        nextVersion = (reports.map { $0.newestSeen }.max() ?? 0) + 1
        guard let (version, root) = try RestartPlan.choose(config.load, reports: reports) else { return }
        let ownCopy = rank == Int32(root) ? versions.first(where: { $0.number == version })?.manifest?.encoded() ?? [] : []
        let shared = try Collectives.broadcastBytes(ownCopy, root: Int32(root), rank: rank, comm: comm, wait: wait)
        guard let manifest = Manifest.parse(shared), manifest.version == version, let oldPlacement = manifest.placement else {
            throw KVFailure(.internal, "the manifest of version \(version) changed while it was being shared")
        }
        guard manifest.store == name else {
            throw KVFailure(.invalid, "\(checkpoints.path) holds store '\(manifest.store)', not '\(name)'")
        }

        // 2. Who reads which old rank's file: one reader per file among the ranks that see it.
        let oldRanks = manifest.ranks
        let have = (0..<oldRanks).map { k -> UInt8 in
            FileSystem.fileSize(checkpoints.dataPath(version, rank: k)) == Int(manifest.files[k].bytes) ? 1 : 0
        }
        let seen = try Collectives.allgatherBytes(have, comm: comm, size: size, wait: wait).map { $0.map { $0 != 0 } }
        let readers = RestartPlan.assignReaders(available: seen, fileBytes: manifest.files.map { $0.bytes })
        var usable = readers.map { $0 != nil }
        var problems: [Int: String] = [:]
        for k in 0..<oldRanks where readers[k] == nil {
            problems[k] = "missing from every rank's directory, or not of its committed size (\(manifest.files[k].bytes) bytes)"
        }
        let myFiles = (0..<oldRanks).filter { readers[$0] == Int(rank) }
        let estimate = myFiles.reduce(0) { $0 + Int(manifest.files[$1].records) }

        // 3. Round 1: every record from the first usable copy.
        var damage: [Int: String] = [:]
        let firstChoice = usable
        if let refused = try flush(count: estimate, records: { emit in
            for k in myFiles {
                damage[k] = try self.loadDataFile(version: version, oldRank: k, placement: oldPlacement) { replicas in
                    RestartPlan.source(of: replicas, usable: firstChoice) == k
                } emit: { try emit($0) }
            }
        }) { throw refused }

        // 4. Damage found while reading: those files' records come from their partners' copies.
        //    (Every rank enters this collective only once its own shipments are acknowledged, so
        //    when it completes, round 1 has landed everywhere.)
        let damageText = damage.keys.sorted().map { "\($0)\t\(damage[$0]!)" }.joined(separator: "\n")
        for text in try Collectives.allgatherBytes(Array(damageText.utf8), comm: comm, size: size, wait: wait) {
            for line in String(decoding: text, as: UTF8.self).split(separator: "\n") {
                let parts = line.split(separator: "\t", maxSplits: 1)
                guard parts.count == 2, let k = Int(parts[0]), k >= 0, k < oldRanks else { continue }
                usable[k] = false
                problems[k] = String(parts[1])
            }
        }
        if usable != firstChoice {
            let good = myFiles.filter { usable[$0] }
            if let refused = try flush(count: estimate, records: { emit in
                for k in good {
                    _ = try self.loadDataFile(version: version, oldRank: k, placement: oldPlacement) { replicas in
                        guard let first = RestartPlan.source(of: replicas, usable: firstChoice) else { return false }
                        return !usable[first]
                    } emit: { try emit($0) }
                }
            }) { throw refused }
            // Each rank's own shipments are acknowledged; the barrier waits for everyone's.
            try barrierLocked(what: "kv_open: loading the committed store")
        }

        // 5. Every key there? Count the keys this rank is now the primary of, by old primary.
        var counts = [UInt64](repeating: 0, count: oldRanks)
        store.forEach { rec in
            guard !rec.isTombstone, placement.withReplicas(ofHash: rec.hash, { $0.first == rank }) else { return }
            if let p = oldPlacement.withReplicas(ofHash: rec.hash, { $0.first }) { counts[Int(p)] += 1 }
        }
        let totals = try Collectives.sum(counts, comm: comm, wait: wait)
        if let lost = RestartPlan.loss(manifest: manifest, loadedPerPrimary: totals, problems: problems) {
            throw KVFailure(.dataLoss, lost)
        }
        writeInterval = max(writeInterval, manifest.interval + 1)
        lastVersion = version
        repairedFiles = problems.count
        if rank == 0 {
            for k in problems.keys.sorted() {
                fputs("ftkv: store '\(name)' version \(version): \(StoreDirectory.dataFileName(rank: k)) \(problems[k]!); its records were loaded from replicas\n", stderr)
            }
        }
    }

    /// Reads one old rank's data file, passing each intact record that `wanted` (given the
    /// record's old replicas) accepts to `emit`. Returns what is damaged, or nil if the whole file
    /// verified. Never throws for damage, only when `emit` does (a failed shipment).
    private func loadDataFile(version: UInt64, oldRank k: Int, placement old: Placement,
                              wanted: (ArraySlice<Int32>) -> Bool, emit: (RecordView) throws -> Void) throws -> String? {
        let path = checkpoints.dataPath(version, rank: k)
        let reader: DataFileReader
        do { reader = try DataFileReader(path: path) } catch let f as KVFailure { return f.message }
        if case .success(let h) = reader.header(), h.storeVersion != version || h.writerRank != UInt32(k) {
            return "its header names version \(h.storeVersion), rank \(h.writerRank)"
        }
        let (_, damage) = try reader.forEachRecord { key, value, stamp in
            let hash = StableHash.hash(key)
            guard old.withReplicas(ofHash: hash, wanted) else { return }
            try emit(RecordView(key: key, value: value, stamp: stamp, isTombstone: false, hash: hash))
        }
        return damage.map { "is damaged: \($0)" }
    }
}
