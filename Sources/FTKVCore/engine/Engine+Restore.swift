import Glibc

/// Restart: kv_open of a store with committed versions loads one (ftkv_load, the newest complete
/// by default) on any number of ranks. Each old rank's part (base file and deltas) is read once,
/// by a rank that sees it (its own directory first, else the second tier); each record is
/// shipped to its replicas under the new placement from the first of its old replicas whose part
/// is intact; a damaged part's records come from its partners' parts.
/// Finally the keys loaded are counted against the manifest: a shortfall is KV_EDATALOSS.
extension Engine {
    /// Collective, inside kv_open before the handle is returned. Every rank decides from the same
    /// gathered data, so every rank throws the same failure.
    func restoreLocked() throws {
        let size = Int(transport.commSize)
        let comm = transport.comm
        let wait = { (r: inout MPIRequest) in try self.completeLocked(&r, what: "kv_open: loading the committed store") }

        // 1. Which version, and its manifest from a rank that has an intact copy.
        // This rank's own directory, and the shared second tier if there is one (where a version
        // counts only once every rank's file has arrived).
        let versions = checkpoints.scan()
        let tier = config.flushDirectory.map { StoreDirectory(base: $0, store: name) }
        let tierVersions = tier?.scan(requireAllFiles: true) ?? []
        let complete = (versions + tierVersions).filter { $0.isComplete }
        var mine = RestartPlan.DirectoryReport()
        mine.newestComplete = complete.map { $0.number }.max() ?? 0
        mine.newestSeen = (versions + tierVersions).map { $0.number }.max() ?? 0
        if case .version(let v) = config.load, complete.contains(where: { $0.number == v }) { mine.hasRequested = 1 }
        let reports = try Collectives.allgatherFixed(mine, comm: comm, size: size, wait: wait)
        nextVersion = (reports.map { $0.newestSeen }.max() ?? 0) + 1
        guard let (version, root) = try RestartPlan.choose(config.load, reports: reports) else { return }
        let ownCopy = rank == Int32(root) ? complete.first(where: { $0.number == version })?.manifest?.encoded() ?? [] : []
        let shared = try Collectives.broadcastBytes(ownCopy, root: Int32(root), rank: rank, comm: comm, wait: wait)
        guard let manifest = Manifest.parse(shared), manifest.version == version, let oldPlacement = manifest.placement else {
            throw KVFailure(.internal, "the manifest of version \(version) changed while it was being shared")
        }
        guard manifest.store == name else {
            throw KVFailure(.invalid, "\(checkpoints.path) holds store '\(manifest.store)', not '\(name)'")
        }

        // 2. Who reads which old rank's file: one reader per file among the ranks that see it.
        let oldRanks = manifest.ranks
        // The old placement names member ids; files are numbered by rank.
        let fileOf = manifest.rankOfMember
        // A rank's part is its base file and its deltas: all there at their committed sizes.
        func partComplete(_ dir: StoreDirectory, _ k: Int) -> Bool {
            manifest.files[k].parts.allSatisfy { FileSystem.fileSize(dir.filePath(version, name: $0.name)) == Int($0.part.bytes) }
        }
        let have = (0..<oldRanks).map { k -> UInt8 in
            if partComplete(checkpoints, k) { return 2 }
            if let tier, partComplete(tier, k) { return 1 }
            return 0
        }
        let seen = try Collectives.allgatherBytes(have, comm: comm, size: size, wait: wait)
        let readers = RestartPlan.assignReaders(available: seen, fileBytes: manifest.files.map { $0.bytes })
        // Where this rank reads each part it was given: its own copy, else the second tier's.
        func directory(_ k: Int) -> StoreDirectory { have[k] == 2 || tier == nil ? checkpoints : tier! }
        var usable = readers.map { $0 != nil }
        var problems: [Int: String] = [:]
        for k in 0..<oldRanks where readers[k] == nil {
            problems[k] = "missing from every rank's directory, or not of its committed size (\(manifest.files[k].bytes) bytes"
                + (manifest.files[k].deltas.isEmpty ? ")" : " in \(manifest.files[k].parts.count) files)")
        }
        let myFiles = (0..<oldRanks).filter { readers[$0] == Int(transport.commRank) }
        let estimate = myFiles.reduce(0) { $0 + Int(manifest.files[$1].parts.reduce(UInt64(0)) { $0 + $1.part.records }) }

        // 3. Round 1: every record from the first usable copy.
        var damage: [Int: String] = [:]
        let firstChoice = usable
        if let refused = try flush(count: estimate, records: { emit in
            for k in myFiles {
                damage[k] = try self.loadPart(manifest.files[k], from: directory(k), version: version, placement: oldPlacement) { replicas in
                    RestartPlan.source(of: replicas, fileOf: fileOf, usable: firstChoice) == k
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
                    _ = try self.loadPart(manifest.files[k], from: directory(k), version: version, placement: oldPlacement) { replicas in
                        guard let first = RestartPlan.source(of: replicas, fileOf: fileOf, usable: firstChoice) else { return false }
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
            if let p = oldPlacement.withReplicas(ofHash: rec.hash, { $0.first }), Int(p) < fileOf.count, fileOf[Int(p)] >= 0 {
                counts[fileOf[Int(p)]] += 1
            }
        }
        let totals = try Collectives.sum(counts, comm: comm, wait: wait)
        if let lost = RestartPlan.loss(manifest: manifest, loadedPerPrimary: totals, problems: problems) {
            throw KVFailure(.dataLoss, lost)
        }
        writeInterval = max(writeInterval, manifest.interval + 1)
        lastVersion = version
        repairedFiles = problems.count
        if transport.commRank == 0 {
            for k in problems.keys.sorted() {
                fputs("ftkv: store '\(name)' version \(version): \(StoreDirectory.dataFileName(rank: k)) \(problems[k]!); its records were loaded from replicas\n", stderr)
            }
        }
    }

    /// Reads one old rank's part (its base file and deltas), passing each intact record that
    /// `wanted` (given the record's old replicas) accepts to `emit`. The deltas are verified
    /// before anything is emitted: with a damaged delta, the base's older values must not be
    /// loaded as if current. Returns what is damaged, or nil if every file verified. Never throws
    /// for damage, only when `emit` does (a failed shipment).
    private func loadPart(_ entry: Manifest.FileEntry, from dir: StoreDirectory, version: UInt64, placement old: Placement,
                          wanted: (ArraySlice<Int32>) -> Bool, emit: (RecordView) throws -> Void) throws -> String? {
        let parts = entry.parts
        for (fileName, part) in parts.dropFirst() {
            if let why = DataFileReader.readPart(dir.filePath(version, name: fileName), part, rank: entry.rank, { _, _, _, _ in }) {
                return "(delta \(fileName)) is damaged: " + why
            }
        }
        // Newest first: a replica applies a record only if it is newer than what it holds, so
        // each key is written once instead of once per file.
        for (fileName, part) in parts.reversed() {
            let why = try DataFileReader.readPart(dir.filePath(version, name: fileName), part, rank: entry.rank) { key, value, stamp, tombstone in
                let hash = StableHash.hash(key)
                guard old.withReplicas(ofHash: hash, wanted) else { return }
                try emit(RecordView(key: key, value: value, stamp: stamp, isTombstone: tombstone, hash: hash))
            }
            if let why { return (fileName == parts[0].name ? "" : "(delta \(fileName)) ") + "is damaged: " + why }
        }
        return nil
    }
}
