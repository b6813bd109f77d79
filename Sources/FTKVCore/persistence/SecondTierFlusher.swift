import Glibc

/// Copies each committed version of this rank's data file to the second tier (ftkv_flush_dir, a
/// shared directory standing for the parallel file system) on a thread of its own, so kv_commit
/// returns as soon as the node-local copy is durable and the application computes meanwhile.
/// No MPI call is made here, so it runs at any thread level.
///
/// In the second tier a version is complete when its manifest and every rank's file are there
/// with their committed sizes (files are renamed into place only once fsynced). When commits
/// come faster than the flush, only the newest waiting version is flushed.
final class SecondTierFlusher {
    /// One file of this rank's part, opened at commit time: a later commit's garbage
    /// collection may unlink it, the open descriptor keeps its bytes.
    struct Source {
        let name: String
        let written: UInt64
        let fd: Int32
    }

    struct Job {
        let version: UInt64
        let parts: [Source]
        let manifest: [UInt8]?

        func closeAll() { parts.forEach { close($0.fd) } }
    }

    enum Outcome: Equatable {
        case pending
        case done
        case failed(String)
        case skipped(by: UInt64)
    }

    let tier: StoreDirectory
    let rank: Int
    let keep: Int
    private let mutex = FTKVLock()
    private var waiting: Job?
    private var outcomes: [UInt64: Outcome] = [:]
    private let worker = WorkerThread()

    init(tier: StoreDirectory, rank: Int, keep: Int) throws {
        self.tier = tier
        self.rank = rank
        self.keep = keep
        try worker.start("second-tier flush") { [unowned self] in self.drain() }
    }

    deinit {
        worker.finish()
        waiting?.closeAll()
    }

    /// Queues `job`; a version still waiting (not started) is skipped in its favour.
    func submit(_ job: Job) {
        mutex.withLock {
            if let old = waiting {
                old.closeAll()
                outcomes[old.version] = .skipped(by: job.version)
            }
            waiting = job
            outcomes[job.version] = .pending
            // Old outcomes are of no interest once far behind.
            if outcomes.count > 256, let oldest = outcomes.keys.min() { outcomes[oldest] = nil }
        }
        worker.wakeUp()
    }

    func outcome(of version: UInt64) -> Outcome? { mutex.withLock { outcomes[version] } }

    func record(_ version: UInt64, _ outcome: Outcome) { mutex.withLock { outcomes[version] = outcome } }

    /// Waits for the flush in progress and the one waiting, then stops the thread.
    func finish() { worker.finish() }

    /// Flushes jobs until none waits (on the worker thread).
    private func drain() {
        while let job = mutex.withLock({ () -> Job? in defer { waiting = nil }; return waiting }) {
            let result: Outcome
            do {
                try flush(job)
                result = .done
            } catch let f as KVFailure {
                result = .failed(f.message)
            } catch {
                result = .failed("\(error)")
            }
            job.closeAll()
            mutex.withLock {
                if outcomes[job.version] == .pending { outcomes[job.version] = result }
            }
        }
    }

    /// What this thread last put in the tier: files it can link instead of copying again.
    private var lastFlushed: (version: UInt64, written: [String: UInt64])?

    private func flush(_ job: Job) throws {
        let dir = tier.versionPath(job.version)
        try FileSystem.makeDirectories(dir)
        for part in job.parts {
            let target = tier.filePath(job.version, name: part.name)
            // The same file (name and version written) already flushed: a hard link.
            if let last = lastFlushed, last.written[part.name] == part.written {
                FileSystem.removeFile(target)
                if link(tier.filePath(last.version, name: part.name), target) == 0 { continue }
            }
            try FileSystem.copy(from: part.fd, to: target, temporarySuffix: ".tmp")
        }
        try FileSystem.syncDirectory(dir)
        if let manifest = job.manifest {
            try FileSystem.writeAtomically(manifest, to: tier.manifestPath(job.version, rank: rank), temporarySuffix: ".tmp")
        }
        lastFlushed = (job.version, Dictionary(uniqueKeysWithValues: job.parts.map { ($0.name, $0.written) }))
        tier.collectGarbage(keep: keep, requireAllFiles: true)
    }
}
