import Glibc

/// kv_commit: a fence, then every rank writes what it holds as a replica to its directory, and
/// the version is published by manifests once every rank's data is durable (docs/format.md).
extension Engine {
    /// What each rank reports after writing its part (fixed 24 bytes, then its manifest lines).
    struct CommitReport {
        var status: Int32 = 0 // 0 or the KVCode of this rank's failure
        var reserved: Int32 = 0
        var directoryDevice: UInt64 = 0
        var directoryInode: UInt64 = 0

        static let size = 24

        func encoded(with entry: Manifest.FileEntry?) -> [UInt8] {
            var me = self
            var bytes = withUnsafeBytes(of: &me) { Array($0) }
            if let entry { bytes += Array(entry.lines().utf8) }
            return bytes
        }

        /// A peer's report and its manifest entry (nil when it failed or sent garbage).
        static func decode(_ bytes: [UInt8], rank: Int, version: UInt64) -> (CommitReport, Manifest.FileEntry?) {
            var report = CommitReport()
            guard bytes.count >= size else {
                report.status = KVCode.internal.rawValue
                return (report, nil)
            }
            withUnsafeMutableBytes(of: &report) { $0.copyBytes(from: bytes[0..<size]) }
            let lines = bytes[size...].split(separator: UInt8(ascii: "\n")).map {
                $0.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
            }
            return (report, Manifest.FileEntry.parse(lines, rank: rank, version: version))
        }
    }

    /// Deltas on top of one base file before a commit writes a new base (bounds what a restart
    /// reads and how many files a version directory holds).
    static let maxDeltas = 8

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
        let size = Int(transport.commSize)
        let wait = { (r: inout MPIRequest) in try self.completeLocked(&r, what: "kv_commit of version \(version)") }

        // 1. This rank's part, fsynced, its names fsynced into the version directory: the
        //    previous chain reused (hard links) plus a delta of what changed, or a new base file.
        var mine = CommitReport()
        var localFailure = refusedByReplica
        var entry: Manifest.FileEntry?
        if localFailure == nil {
            do {
                entry = try writePart(version: version)
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
        let gathered = try Collectives.allgatherBytes(mine.encoded(with: entry), comm: transport.comm, size: size, wait: wait)
        let decoded = gathered.enumerated().map { CommitReport.decode($1, rank: $0, version: version) }
        let reports = decoded.map { $0.0 }
        // A rank that reported success but no readable entry is a bug: every rank refuses alike.
        let statuses = decoded.map { report, entry -> Int32 in
            report.status != 0 ? report.status : (entry == nil ? KVCode.internal.rawValue : 0)
        }
        if let bad = statuses.firstIndex(where: { $0 != 0 }) {
            if localFailure == nil { removePart(entry, version: version) }
            return .failure(agreedFailure(localFailure, statuses, first: bad,
                                          what: "could not write its part of version \(version)"))
        }

        // 2. Every rank's data is durable: publish. Two ranks per directory write a manifest
        //    copy (ranks sharing a directory see the same device and inode).
        let manifest = Manifest(store: name, version: version, interval: writeInterval, replicas: placement.replicas,
                                consistency: config.consistency, created: UInt64(time(nil)),
                                nodeOfRank: view.nodeOfMember, memberOfRank: view.members, files: decoded.map { $0.1! })
        let sharers = reports.indices.filter {
            reports[$0].directoryDevice == mine.directoryDevice && reports[$0].directoryInode == mine.directoryInode
        }
        let writesManifest = sharers.prefix(2).contains(Int(fileRank))
        let manifestPath = checkpoints.manifestPath(version, rank: Int(fileRank))
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
        lastCommittedFile = CommittedFile(version: version, entry: entry!, mutations: store.mutations)
        store.markAllUnchanged()
        removeRetiredVersions()
        if let flusher {
            // Opened now, before a later commit's garbage collection may unlink them.
            var parts: [SecondTierFlusher.Source] = []
            for (fileName, part) in entry!.parts {
                let path = checkpoints.filePath(version, name: fileName)
                let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else {
                    parts.forEach { Glibc.close($0.fd) }
                    flusher.record(version, .failed(FileSystem.failure("cannot open for flushing", path).message))
                    return .success(version)
                }
                parts.append(.init(name: fileName, written: part.written, fd: fd))
            }
            flusher.submit(.init(version: version, parts: parts, manifest: fileRank < 2 ? manifest.encoded() : nil))
        }
        return .success(version)
    }

    /// The number of this rank's files in a version: its rank in the store's current
    /// communicator (after a shrink, no longer its member id; the manifest maps one to the other).
    var fileRank: Int32 { transport.commRank }

    /// Versions beyond ftkv_keep go on the remover's thread (inline if it cannot start).
    private func removeRetiredVersions() {
        if remover == nil { remover = try? BackgroundRemover(directories: [(checkpoints, false)], keep: config.keep) }
        if let remover { remover.request() } else { checkpoints.collectGarbage(keep: config.keep) }
    }

    /// Whether `version` is complete in the second tier (ftkv_flush_dir): every rank's file and a
    /// manifest there. Throws when this rank's flush of it failed or was skipped.
    public func flushed(_ version: UInt64) throws -> Bool {
        let tierFlusher = try lock.withLock { () -> SecondTierFlusher in
            try checkUsable()
            guard let flusher else { throw KVFailure(.invalid, "no second tier: ftkv_flush_dir is not set") }
            return flusher
        }
        switch tierFlusher.outcome(of: version) {
        case .failed(let why)?: throw KVFailure(.io, "flushing version \(version) to the second tier failed: \(why)")
        case .skipped(let newer)?:
            throw KVFailure(.notFound, "version \(version) was not flushed: version \(newer) was committed before its flush began")
        case nil: throw KVFailure(.notFound, "version \(version) was not committed by this handle")
        case .pending?, .done?:
            return tierFlusher.tier.state(of: version, requireAllFiles: true).isComplete
        }
    }

    /// The failure every rank reports when rank `first` (or this one) failed a step.
    private func agreedFailure(_ mine: KVFailure?, _ statuses: [Int32], first: Int, what: String) -> KVFailure {
        if let mine { return mine }
        let code = KVCode(rawValue: statuses[first]) ?? .io
        let failed = statuses.indices.filter { statuses[$0] != 0 }
        return KVFailure(code, "rank \(first) \(what) (\(code.text))" + (failed.count > 1 ? "; \(failed.count) ranks failed" : "")
                            + "; see kv_errmsg on that rank. Earlier versions are intact")
    }

    /// Writes this rank's part of `version` and returns its manifest entry. Unchanged since this
    /// rank's last commit: the same files, hard-linked. A few changes: those files plus a delta
    /// file of the changed records (tombstones included). Otherwise, or when the file system has
    /// no hard links: a new base file of every live record.
    private func writePart(version: UInt64) throws -> Manifest.FileEntry {
        try FileSystem.makeDirectories(checkpoints.versionPath(version))
        if let last = lastCommittedFile, linkParts(of: last, into: version) {
            if last.mutations == store.mutations { return last.entry }
            if !store.changesForgotten, last.entry.deltas.count < Engine.maxDeltas, store.changedRecords * 2 < store.count {
                var entry = last.entry
                entry.deltas.append(try writeDelta(version: version))
                entry.primaryRecords = countPrimaryRecords()
                return entry
            }
            removePart(last.entry, version: version)
        }
        let (base, primary) = try writeBase(version: version)
        return Manifest.FileEntry(rank: Int(fileRank), base: base, primaryRecords: primary)
    }

    /// Hard-links every file of the last commit's part into `version`; false (nothing left
    /// behind) when the file system refuses.
    private func linkParts(of last: CommittedFile, into version: UInt64) -> Bool {
        for (fileName, _) in last.entry.parts {
            let target = checkpoints.filePath(version, name: fileName)
            FileSystem.removeFile(target)
            if link(checkpoints.filePath(last.version, name: fileName), target) != 0 {
                removePart(last.entry, version: version)
                return false
            }
        }
        return true
    }

    /// Removes this rank's files of a version that will not be published.
    private func removePart(_ entry: Manifest.FileEntry?, version: UInt64) {
        FileSystem.removeFile(checkpoints.dataPath(version, rank: Int(fileRank)))
        for (fileName, _) in entry?.parts ?? [] { FileSystem.removeFile(checkpoints.filePath(version, name: fileName)) }
        FileSystem.removeFile(checkpoints.filePath(version, name: StoreDirectory.deltaFileName(rank: Int(fileRank), written: version)))
    }

    /// Live records this rank is the primary of.
    private func countPrimaryRecords() -> UInt64 {
        var n: UInt64 = 0
        store.forEach { rec in
            if !rec.isTombstone && placement.withReplicas(ofHash: rec.hash, { $0.first == rank }) { n += 1 }
        }
        return n
    }

    /// A new base file: every live record, and how many of them this rank is the primary of.
    private func writeBase(version: UInt64) throws -> (Manifest.Part, UInt64) {
        var primary: UInt64 = 0
        let part = try writeFile(checkpoints.dataPath(version, rank: Int(fileRank)), version: version) { writer in
            try store.forEach { rec in
                guard !rec.isTombstone else { return }
                try writer.append(key: rec.key, value: rec.value, stamp: rec.stamp)
                if placement.withReplicas(ofHash: rec.hash, { $0.first == rank }) { primary += 1 }
            }
        }
        return (part, primary)
    }

    /// A delta file: the records changed since the last commit, tombstones included.
    private func writeDelta(version: UInt64) throws -> Manifest.Part {
        try writeFile(checkpoints.filePath(version, name: StoreDirectory.deltaFileName(rank: Int(fileRank), written: version)), version: version) { writer in
            try store.forEachChanged { rec in
                try writer.append(key: rec.key, value: rec.value, stamp: rec.stamp, tombstone: rec.isTombstone)
            }
        }
    }

    /// One data file written by `body`, fsynced, its name fsynced into the version directory.
    private func writeFile(_ path: String, version: UInt64, _ body: (DataFileWriter) throws -> Void) throws -> Manifest.Part {
        let writer = try DataFileWriter(path: path, header: .init(storeVersion: version, writerRank: UInt32(fileRank), rankCount: UInt32(transport.commSize)))
        do {
            try body(writer)
            if faults.failCommitWrite { throw KVFailure(.io, "test fault: commit write failed (FTKV_TEST_FAULT=commit-write)") }
            let summary = try writer.finish()
            try FileSystem.syncDirectory(checkpoints.versionPath(version))
            return Manifest.Part(written: version, bytes: summary.bytes, records: summary.records, chain: summary.chain)
        } catch {
            writer.abandon()
            throw error
        }
    }
}

/// This rank's part of its last successful commit, reused by the next one (links, deltas).
struct CommittedFile {
    /// The version directory the files are in (the last commit).
    var version: UInt64
    var entry: Manifest.FileEntry
    /// The store's mutation count when it was committed.
    var mutations: UInt64
}
