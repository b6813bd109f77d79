/// Removes old versions (StoreDirectory.collectGarbage) on a thread of its own, so a commit does
/// not wait while the file system frees the extents of a retired version's files (hundreds of
/// milliseconds for large ones). Safe beside later commits: it only removes versions older than
/// the newest `keep` complete ones, and a commit only reads (links) files of the newest.
final class BackgroundRemover {
    private let worker = WorkerThread()

    /// `directories`: each with whether a version there needs all its files to count (the tier).
    init(directories: [(StoreDirectory, Bool)], keep: Int) throws {
        try worker.start("version remover") {
            for (dir, requireAll) in directories { dir.collectGarbage(keep: keep, requireAllFiles: requireAll) }
        }
    }

    /// Asks for a pass (after a commit).
    func request() { worker.wakeUp() }

    /// Finishes a pass asked for, then stops the thread.
    func finish() { worker.finish() }

    deinit { worker.finish() }
}
