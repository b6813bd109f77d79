import Glibc

/// Client jobs that connect through one port file take turns. Open MPI 4.1 pairs a connect with
/// an accept through two keys named after the port ("<port>:connect", "<port>:accept") in the
/// name service; two jobs connecting to one port at once overwrite each other's key, and the
/// server can end up paired with one job while the other holds its answer (measured: both jobs
/// fail, and the server's later accepts stay crossed). So client rank 0 holds a lock file beside
/// the port file, `<port file>.connecting`, from before it reads the port until the server's
/// welcome. The file names when its holder gives up (its own deadline): a holder that died is
/// overtaken once that time has passed.
enum ConnectTurn {
    static func lockPath(forPortFile path: String) -> String { path + ".connecting" }

    /// Waits until this job holds the lock (at most `waitSeconds`); it will hold it at most
    /// `holdSeconds`.
    static func take(_ lock: String, holdSeconds: Double, waitSeconds: Double) throws {
        let deadline = Deadline(seconds: waitSeconds)
        var backoff = Backoff(spinRounds: 0, maxSleepMicros: 20_000)
        while true {
            let fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd >= 0 {
                let note = "\(Int(Double(time(nil)) + holdSeconds + 1)) pid \(getpid())\n"
                _ = note.withCString { write(fd, $0, strlen($0)) }
                close(fd)
                return
            }
            guard errno == EEXIST else {
                throw KVFailure(.io, "cannot create the connection lock '\(lock)': \(String(cString: strerror(errno)))")
            }
            // A holder past the time it named has died: overtake it.
            if let bytes = FileSystem.readAll(lock, limit: 4096),
               let first = String(decoding: bytes, as: UTF8.self).split(separator: " ").first,
               let givesUpAt = Int(first), Int(time(nil)) > givesUpAt + 5 {
                unlink(lock)
                continue
            }
            if deadline.hasPassed {
                throw KVFailure(.noServer, "another client job has been connecting through this port file for over \(waitSeconds) s (lock file '\(lock)')")
            }
            backoff.pause()
        }
    }

    static func release(_ lock: String) { unlink(lock) }
}
