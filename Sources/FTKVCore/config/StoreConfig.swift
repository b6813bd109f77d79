import Glibc

/// When other ranks see a put.
public enum Consistency: Int32, Sendable {
    /// Puts are buffered on the writer and made visible everywhere by the next fence (default).
    case fence = 0
    /// kv_put returns after every replica holds the value.
    case sequential = 1
}

/// Which committed version kv_open loads (ftkv_load).
public enum LoadChoice: Sendable, Equatable {
    /// The newest complete version in any rank's directory (default); none: start empty.
    case latest
    /// Start empty whatever is on disk (new commits still number after the versions there).
    case none
    case version(UInt64)
}

/// Who serves remote requests.
public enum ProgressMode: Sendable, Equatable {
    /// A background thread when MPI gives MPI_THREAD_MULTIPLE, else inside library calls.
    case auto
    /// Always a background thread; kv_open fails if MPI does not give MPI_THREAD_MULTIPLE.
    case thread
    /// Only inside library calls.
    case inline
}

/// The options of one store. Every key is documented in docs/configuration.md.
/// Values come from the MPI_Info given to kv_open (or the Swift options dictionary); an
/// environment variable of the same name in upper case overrides it.
public struct StoreConfig: Sendable, Equatable {
    public var replicas = 2
    public var consistency = Consistency.fence
    public var progress = ProgressMode.auto
    /// Seconds any wait on another rank may take before KV_ETIMEDOUT.
    public var timeoutSeconds = 60.0
    /// This rank's node name; nil means the shared-memory group from MPI_Comm_split_type.
    public var node: String?
    /// Where kv_commit writes versions (this rank's node-local directory): <dir>/<store name>/.
    public var directory = "ftkv-data"
    /// Complete versions kept on disk; older ones are removed after a newer one is complete.
    public var keep = 2
    public var load = LoadChoice.latest
    /// The second tier (a shared directory standing for the parallel file system): committed
    /// versions are copied there in the background; nil: none.
    public var flushDirectory: String?
    /// Seconds between heartbeats of ranks with a progress thread (0: no failure detection).
    public var heartbeatSeconds = 0.1
    /// Seconds of silence after which a watched rank is suspected of having failed.
    public var suspectAfterSeconds = 0.8
    /// What a failed member does to the job: the survivors carry on (view change), or the job
    /// is ended at once (a bulk-synchronous code whose own exchanges would hang on the dead).
    public var abortOnFailure = false
    /// kv_connect: the secret the server asks of client jobs (also read from a port file).
    public var secret: String?
    /// Whether the store's tables ask for transparent huge pages (LargeMemory): fewer TLB misses
    /// on gets; by default not on virtual machines whose huge pages are slow to fault in
    /// (HugePagePolicy, docs/benchmarks.md).
    public var hugePages = HugePageChoice.auto
    /// Whether each rank keeps resident room for the copies one member's failure would bring it
    /// (Engine.keepRecoveryReserve, docs/recovery.md): re-replication then lands in memory
    /// already faulted in, at the price of that memory and of faulting it in during the fences
    /// that grow the table. Off by default: measured here, it cost a first fence more than it
    /// saved a recovery.
    public var recoveryReserve = false

    public static let keys = ["ftkv_replicas", "ftkv_consistency", "ftkv_progress", "ftkv_timeout", "ftkv_node",
                              "ftkv_dir", "ftkv_keep", "ftkv_load", "ftkv_flush_dir", "ftkv_heartbeat", "ftkv_suspect_after",
                              "ftkv_on_failure", "ftkv_secret", "ftkv_huge_pages", "ftkv_recovery_reserve"]

    public init() {}

    /// Parses options; `given` holds the info keys, `environment` looks up variables
    /// (injectable for tests). Unknown ftkv_* info keys are rejected to catch typos.
    public static func parse(given: [String: String],
                             environment: (String) -> String? = StoreConfig.processEnvironment) throws -> StoreConfig {
        for key in given.keys where key.hasPrefix("ftkv_") && !keys.contains(key) {
            throw KVFailure(.invalid, "unknown option '\(key)' (known: \(keys.joined(separator: ", ")))")
        }
        func value(_ key: String) -> (String, String)? {
            if let env = environment(key.uppercased()) { return (env, "environment variable \(key.uppercased())") }
            if let info = given[key] { return (info, "info key \(key)") }
            return nil
        }
        var config = StoreConfig()
        if let (text, source) = value("ftkv_replicas") {
            guard let r = Int(text.trimmingSpaces), r >= 1, r <= 64 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected an integer from 1 to 64")
            }
            config.replicas = r
        }
        if let (text, source) = value("ftkv_consistency") {
            switch text.trimmingSpaces.lowercased() {
            case "fence": config.consistency = .fence
            case "sequential": config.consistency = .sequential
            default: throw KVFailure(.invalid, "\(source) = '\(text)': expected 'fence' or 'sequential'")
            }
        }
        if let (text, source) = value("ftkv_progress") {
            switch text.trimmingSpaces.lowercased() {
            case "auto": config.progress = .auto
            case "thread": config.progress = .thread
            case "inline": config.progress = .inline
            default: throw KVFailure(.invalid, "\(source) = '\(text)': expected 'auto', 'thread' or 'inline'")
            }
        }
        if let (text, source) = value("ftkv_timeout") {
            guard let t = Double(text.trimmingSpaces), t.isFinite, t > 0, t <= 86_400 * 7 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected seconds, > 0")
            }
            config.timeoutSeconds = t
        }
        if let (text, source) = value("ftkv_node") {
            let name = text.trimmingSpaces
            guard !name.isEmpty, name.utf8.count <= 256 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected a node name of 1 to 256 bytes")
            }
            config.node = name
        }
        if let (text, source) = value("ftkv_dir") {
            let dir = text.trimmingSpaces
            guard !dir.isEmpty, dir.utf8.count <= 4096, !dir.utf8.contains(0) else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected a directory path")
            }
            config.directory = dir
        }
        if let (text, source) = value("ftkv_flush_dir") {
            let dir = text.trimmingSpaces
            guard !dir.isEmpty, dir.utf8.count <= 4096 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected a directory path")
            }
            config.flushDirectory = dir
        }
        if let (text, source) = value("ftkv_heartbeat") {
            guard let t = Double(text.trimmingSpaces), t.isFinite, t >= 0, t <= 3600 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected seconds >= 0 (0: no failure detection)")
            }
            config.heartbeatSeconds = t
        }
        if let (text, source) = value("ftkv_suspect_after") {
            guard let t = Double(text.trimmingSpaces), t.isFinite, t > 0, t <= 86_400 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected seconds > 0")
            }
            config.suspectAfterSeconds = t
        }
        if let (text, source) = value("ftkv_on_failure") {
            switch text.trimmingSpaces.lowercased() {
            case "continue": config.abortOnFailure = false
            case "abort": config.abortOnFailure = true
            default: throw KVFailure(.invalid, "\(source) = '\(text)': expected continue or abort")
            }
        }
        if config.heartbeatSeconds > 0 && config.suspectAfterSeconds < 3 * config.heartbeatSeconds {
            throw KVFailure(.invalid, "ftkv_suspect_after (\(config.suspectAfterSeconds) s) must be at least 3 heartbeats (ftkv_heartbeat = \(config.heartbeatSeconds) s)")
        }
        if let (text, source) = value("ftkv_secret") {
            let secret = text.trimmingSpaces
            guard !secret.isEmpty, secret.utf8.count <= 1024 else {
                throw KVFailure(.invalid, "\(source): expected a secret of 1 to 1024 bytes")
            }
            config.secret = secret
        }
        if let (text, source) = value("ftkv_huge_pages") {
            switch text.trimmingSpaces.lowercased() {
            case "auto": config.hugePages = .auto
            case "yes", "1", "true": config.hugePages = .yes
            case "no", "0", "false": config.hugePages = .no
            default: throw KVFailure(.invalid, "\(source) = '\(text)': expected auto, yes or no")
            }
        }
        if let (text, source) = value("ftkv_recovery_reserve") {
            switch text.trimmingSpaces.lowercased() {
            case "on", "yes", "1", "true": config.recoveryReserve = true
            case "off", "no", "0", "false": config.recoveryReserve = false
            default: throw KVFailure(.invalid, "\(source) = '\(text)': expected on or off")
            }
        }
        if let (text, source) = value("ftkv_keep") {
            guard let k = Int(text.trimmingSpaces), k >= 1, k <= 1_000_000 else {
                throw KVFailure(.invalid, "\(source) = '\(text)': expected an integer >= 1")
            }
            config.keep = k
        }
        if let (text, source) = value("ftkv_load") {
            switch text.trimmingSpaces.lowercased() {
            case "latest": config.load = .latest
            case "none": config.load = .none
            default:
                guard let v = UInt64(text.trimmingSpaces), v >= 1 else {
                    throw KVFailure(.invalid, "\(source) = '\(text)': expected 'latest', 'none' or a version number")
                }
                config.load = .version(v)
            }
        }
        return config
    }

    public static func processEnvironment(_ name: String) -> String? {
        guard let p = getenv(name) else { return nil }
        return String(cString: p)
    }

    /// Store names become file names later: keep them portable.
    public static func validateName(_ name: String) throws {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 128 else {
            throw KVFailure(.invalid, "store name must be 1 to 128 characters, got \(bytes.count)")
        }
        for b in bytes {
            let ok = (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
            guard ok else {
                throw KVFailure(.invalid, "store name '\(name)' may only use A-Z a-z 0-9 . _ -")
            }
        }
        guard name != "." && name != ".." else { throw KVFailure(.invalid, "store name cannot be '\(name)'") }
    }
}
