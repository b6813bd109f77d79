/// Test-only switches, read from the environment at kv_open, so tests can reach paths that a
/// healthy run never takes (docs/configuration.md, "For tests"):
///   FTKV_TEST_FAULT=apply-fail,stale-epoch,truncate-replies   (any subset, comma-separated)
///     apply-fail        this rank refuses every write another rank asks it to apply
///     stale-epoch       this rank stamps its messages with the next membership epoch
///     truncate-replies  this rank's replies lose their last byte
///     commit-write      kv_commit fails writing this rank's data file (as a full disk would)
///     commit-publish    kv_commit fails publishing this rank's manifest copy
///     die-after-data      SIGKILL this process in kv_commit once its data file is durable,
///                         before it reports so (no rank can publish: the version never exists)
///     die-before-publish  SIGKILL this process in kv_commit after every rank reported its data
///                         durable, before its manifest copy (others publish: the version exists)
///     die-after-publish   SIGKILL this process in kv_commit right after its manifest copy
///     die-deciding        SIGKILL this process when, as coordinator of a view change, it has
///                         sent its decision to one survivor only
///     die-rereplicating   SIGKILL this process in a view change, after it sent 16 records
///                         to restore copies (or all it had, if fewer)
///     open-stall          in kv_open, sleep three ftkv_timeouts between duplicating the
///                         communicator and the first allgather: the other ranks give up on
///                         that allgather while it is under way
///   FTKV_TEST_FAULT_RANK=N    apply FTKV_TEST_FAULT only on rank N of the store's communicator
///   FTKV_TEST_BATCH_BYTES=N   cut the fence's apply batches, and re-replication's messages,
///                             at N bytes (default 4 MiB), so small tests exercise many of them.
struct FaultInjection: Sendable, Equatable {
    var failApplies = false
    var staleEpoch = false
    var truncateReplies = false
    var failCommitWrite = false
    var failCommitPublish = false
    var dieAfterData = false
    var dieBeforePublish = false
    var dieAfterPublish = false
    var dieDeciding = false
    var dieRereplicating = false
    var stallOpen = false
    /// Only this rank applies the faults (nil: every rank).
    var onlyRank: Int32?
    var batchBytes = Wire.fenceChunkBytes

    init() {}

    static func parse(environment: (String) -> String? = StoreConfig.processEnvironment) throws -> FaultInjection {
        var f = FaultInjection()
        if let list = environment("FTKV_TEST_FAULT") {
            for item in list.split(separator: ",") {
                switch item {
                case "apply-fail": f.failApplies = true
                case "stale-epoch": f.staleEpoch = true
                case "truncate-replies": f.truncateReplies = true
                case "commit-write": f.failCommitWrite = true
                case "commit-publish": f.failCommitPublish = true
                case "die-after-data": f.dieAfterData = true
                case "die-before-publish": f.dieBeforePublish = true
                case "die-after-publish": f.dieAfterPublish = true
                case "die-deciding": f.dieDeciding = true
                case "die-rereplicating": f.dieRereplicating = true
                case "open-stall": f.stallOpen = true
                default:
                    throw KVFailure(.invalid, "FTKV_TEST_FAULT: unknown fault '\(item)' (apply-fail, stale-epoch, truncate-replies, commit-write, commit-publish, die-after-data, die-before-publish, die-after-publish, die-deciding, die-rereplicating, open-stall)")
                }
            }
        }
        if let text = environment("FTKV_TEST_BATCH_BYTES") {
            guard let n = Int(text), n >= 1, n <= Wire.fenceChunkBytes else {
                throw KVFailure(.invalid, "FTKV_TEST_BATCH_BYTES must be 1..\(Wire.fenceChunkBytes), not '\(text)'")
            }
            f.batchBytes = n
        }
        if let text = environment("FTKV_TEST_FAULT_RANK") {
            guard let n = Int32(text), n >= 0 else { throw KVFailure(.invalid, "FTKV_TEST_FAULT_RANK must be a rank, not '\(text)'") }
            f.onlyRank = n
        }
        return f
    }

    /// The faults that apply on `rank` (the batch size applies everywhere).
    func on(rank: Int32) -> FaultInjection {
        guard let only = onlyRank, only != rank else { return self }
        var none = FaultInjection()
        none.batchBytes = batchBytes
        return none
    }
}
