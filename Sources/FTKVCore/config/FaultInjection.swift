/// Test-only switches, read from the environment at kv_open, so tests can reach paths that a
/// healthy run never takes (docs/configuration.md, "For tests"):
///   FTKV_TEST_FAULT=apply-fail,stale-epoch,truncate-replies   (any subset, comma-separated)
///     apply-fail        this rank refuses every write another rank asks it to apply
///     stale-epoch       this rank stamps its messages with the next membership epoch
///     truncate-replies  this rank's replies lose their last byte
///   FTKV_TEST_BATCH_BYTES=N   cut the fence's apply batches at N bytes (default 4 MiB), so
///                             small tests exercise multi-batch fences.
struct FaultInjection: Sendable, Equatable {
    var failApplies = false
    var staleEpoch = false
    var truncateReplies = false
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
                default:
                    throw KVFailure(.invalid, "FTKV_TEST_FAULT: unknown fault '\(item)' (apply-fail, stale-epoch, truncate-replies)")
                }
            }
        }
        if let text = environment("FTKV_TEST_BATCH_BYTES") {
            guard let n = Int(text), n >= 1, n <= Wire.fenceChunkBytes else {
                throw KVFailure(.invalid, "FTKV_TEST_BATCH_BYTES must be 1..\(Wire.fenceChunkBytes), not '\(text)'")
            }
            f.batchBytes = n
        }
        return f
    }
}
