import Glibc

/// kv_commit: a fence, then every rank writes what it holds as a replica to its directory, and
/// the version is published by manifests once every rank's data is durable (docs/format.md).
extension Engine {
    /// What each rank reports after writing its data file (fixed 56 bytes, MPI_BYTE).
    struct CommitReport {
        var status: Int32 = 0 // 0 or the KVCode of this rank's failure
        var reserved: Int32 = 0
        var bytes: UInt64 = 0
        var records: UInt64 = 0
        var primaryRecords: UInt64 = 0
        var chain: UInt32 = 0
        var reserved2: UInt32 = 0
        var directoryDevice: UInt64 = 0
        var directoryInode: UInt64 = 0
    }

    /// Collective. Returns the new version number. A failure that every rank learned of (a full
    /// disk, an unwritable directory, a replica refusing writes) leaves the handle usable and the
    /// version unpublished; a timed-out or MPI-failed collective leaves it unusable, as kv_fence.
    public func commit() throws -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        try checkUsable()
        let outcome: Result<UInt64, KVFailure>
        do {
            var refused: KVFailure?
            do { try fenceLocked() } catch let f as KVFailure where f.code == .remote { refused = f }
            outcome = try commitLocked(refusedByReplica: refused)
        } catch {
            noteFailure(error, inCollective: true)
            throw error
        }
        return try outcome.get()
    }

    /// The commit protocol after the fence. Throws only when the collectives themselves fail;
    /// a failure all ranks agreed on is returned.
    private func commitLocked(refusedByReplica: KVFailure?) throws -> Result<UInt64, KVFailure> {
        let version = nextVersion
        nextVersion += 1
        let size = Int(transport.size)
        let wait = { (r: inout MPIRequest) in try self.completeLocked(&r, what: "kv_commit of version \(version)") }

        // 1. This rank's data file, fsynced, its name fsynced into the version directory.
        var mine = CommitReport()
        var localFailure = refusedByReplica
        if localFailure == nil {
            do {
                let (summary, primary) = try writeDataFile(version: version)
                mine.bytes = summary.bytes
                mine.records = summary.records
                mine.chain = summary.chain
                mine.primaryRecords = primary
                if let (dev, ino) = FileSystem.identity(checkpoints.versionPath(version)) {
                    mine.directoryDevice = dev
                    mine.directoryInode = ino
                }
            } catch let f as KVFailure {
                localFailure = f
            }
        }
        mine.status = localFailure?.code.rawValue ?? 0
        if faults.dieAfterData { kill(getpid(), SIGKILL) }
        let reports = try Collectives.allgatherFixed(mine, comm: transport.comm, size: size, wait: wait)
        if let bad = reports.firstIndex(where: { $0.status != 0 }) {
            if localFailure == nil { FileSystem.removeFile(checkpoints.dataPath(version, rank: Int(rank))) }
            return .failure(agreedFailure(localFailure, reports.map { $0.status }, first: bad,
                                          what: "could not write its part of version \(version)"))
        }

        // 2. Every rank's data is durable: publish. Two ranks per directory write a manifest
        //    copy (ranks sharing a directory see the same device and inode).
        let manifest = Manifest(store: name, version: version, interval: writeInterval, replicas: placement.replicas,
                                consistency: config.consistency, created: UInt64(time(nil)),
                                nodeOfRank: view.nodeOfMember,
                                files: reports.enumerated().map { r, rep in
                                    Manifest.FileEntry(rank: r, bytes: rep.bytes, records: rep.records,
                                                       primaryRecords: rep.primaryRecords, chain: rep.chain)
                                })
        let sharers = reports.indices.filter {
            reports[$0].directoryDevice == mine.directoryDevice && reports[$0].directoryInode == mine.directoryInode
        }
        let writesManifest = sharers.prefix(2).contains(Int(rank))
        let manifestPath = checkpoints.manifestPath(version, rank: Int(rank))
        var publishFailure: KVFailure?
        if faults.dieBeforePublish { kill(getpid(), SIGKILL) }
        if writesManifest {
            do {
                if faults.failCommitPublish { throw KVFailure(.io, "test fault: publishing failed (FTKV_TEST_FAULT=commit-publish)") }
                try FileSystem.writeAtomically(manifest.encoded(), to: manifestPath, temporarySuffix: ".tmp")
            } catch let f as KVFailure {
                publishFailure = f
            }
        }
        if faults.dieAfterPublish { kill(getpid(), SIGKILL) }
        let published = try Collectives.allgatherFixed(publishFailure?.code.rawValue ?? 0, comm: transport.comm, size: size, wait: wait)
        if let bad = published.firstIndex(where: { $0 != 0 }) {
            // Withdraw the copies that made it, so the version does not exist on restart (a crash
            // before this point leaves it complete: every data file was durable before any copy).
            if writesManifest && publishFailure == nil {
                FileSystem.removeFile(manifestPath)
                try? FileSystem.syncDirectory(checkpoints.versionPath(version))
            }
            return .failure(agreedFailure(publishFailure, published, first: bad, what: "could not publish version \(version)"))
        }
        lastVersion = version
        checkpoints.collectGarbage(keep: config.keep)
        return .success(version)
    }

    /// The failure every rank reports when rank `first` (or this one) failed a step.
    private func agreedFailure(_ mine: KVFailure?, _ statuses: [Int32], first: Int, what: String) -> KVFailure {
        if let mine { return mine }
        let code = KVCode(rawValue: statuses[first]) ?? .io
        let failed = statuses.indices.filter { statuses[$0] != 0 }
        return KVFailure(code, "rank \(first) \(what) (\(code.text))" + (failed.count > 1 ? "; \(failed.count) ranks failed" : "")
                            + "; see kv_errmsg on that rank. Earlier versions are intact")
    }

    /// Writes every live record this rank holds as a replica to its data file of `version`.
    /// Returns the file's summary and how many of its records this rank is the primary of.
    private func writeDataFile(version: UInt64) throws -> (DataFileWriter.Summary, UInt64) {
        let dir = checkpoints.versionPath(version)
        try FileSystem.makeDirectories(dir)
        let writer = try DataFileWriter(path: checkpoints.dataPath(version, rank: Int(rank)),
                                        header: .init(storeVersion: version, writerRank: UInt32(rank), rankCount: UInt32(transport.size)))
        var primary: UInt64 = 0
        do {
            try store.forEach { rec in
                guard !rec.isTombstone else { return }
                try writer.append(key: rec.key, value: rec.value, stamp: rec.stamp)
                if placement.withReplicas(ofHash: rec.hash, { $0.first == rank }) { primary += 1 }
            }
            if faults.failCommitWrite { throw KVFailure(.io, "test fault: commit write failed (FTKV_TEST_FAULT=commit-write)") }
            let summary = try writer.finish()
            try FileSystem.syncDirectory(dir)
            return (summary, primary)
        } catch {
            writer.abandon()
            throw error
        }
    }
}
