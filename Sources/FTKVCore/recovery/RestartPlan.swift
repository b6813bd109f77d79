/// The decisions of a restart, as pure functions of what every rank reported (every rank computes
/// the same answer from the same gathered data, so no further agreement is needed).
public enum RestartPlan {
    /// What one rank found in its directory (fixed 32 bytes, gathered at kv_open).
    public struct DirectoryReport: Equatable {
        public var newestComplete: UInt64 = 0
        public var newestSeen: UInt64 = 0
        public var hasRequested: UInt64 = 0 // 1 if the version ftkv_load names is complete here
        public var reserved: UInt64 = 0
        public init() {}
    }

    /// The version to load and the rank that holds an intact manifest of it; nil: nothing to load.
    public static func choose(_ load: LoadChoice, reports: [DirectoryReport]) throws -> (version: UInt64, root: Int)? {
        switch load {
        case .none:
            return nil
        case .latest:
            guard let newest = reports.map({ $0.newestComplete }).max(), newest > 0 else { return nil }
            return (newest, reports.firstIndex { $0.newestComplete == newest }!)
        case .version(let v):
            guard let root = reports.firstIndex(where: { $0.hasRequested != 0 }) else {
                throw KVFailure(.invalid, "ftkv_load = \(v): no rank's directory holds a complete version \(v)")
            }
            return (v, root)
        }
    }

    /// Which new rank reads each old rank's data file. `available[r][k]` says how rank r sees
    /// file k: 0 not at all, 1 in the shared second tier, 2 in its own directory. A rank with its
    /// own copy is preferred (node-local storage is the fast tier); among equals, the one with the
    /// fewest bytes assigned so far (ties: lowest rank). nil: nobody sees the file.
    public static func assignReaders(available: [[UInt8]], fileBytes: [UInt64]) -> [Int?] {
        var load = [UInt64](repeating: 0, count: available.count)
        var reader = [Int?](repeating: nil, count: fileBytes.count)
        for k in fileBytes.indices {
            var best: Int?
            var bestLevel: UInt8 = 0
            for r in available.indices where k < available[r].count && available[r][k] > 0 {
                let level = available[r][k]
                if best == nil || level > bestLevel || (level == bestLevel && load[r] < load[best!]) {
                    best = r
                    bestLevel = level
                }
            }
            if let best {
                reader[k] = best
                load[best] += fileBytes[k]
            }
        }
        return reader
    }

    /// The copy a record is loaded from: the file of the first of its old replicas (member ids,
    /// numbered by `fileOf`) that is usable.
    @inline(__always)
    public static func source(of replicas: ArraySlice<Int32>, fileOf: [Int], usable: [Bool]) -> Int? {
        for m in replicas where Int(m) < fileOf.count {
            let k = fileOf[Int(m)]
            if k >= 0 && usable[k] { return k }
        }
        return nil
    }

    /// Compares the keys loaded per old primary with the manifest; nil when nothing is missing,
    /// else a description naming what was lost and which copies were missing or damaged.
    public static func loss(manifest: Manifest, loadedPerPrimary: [UInt64], problems: [Int: String]) -> String? {
        var lost: [String] = []
        var missingTotal: UInt64 = 0
        for (p, entry) in manifest.files.enumerated() where loadedPerPrimary[p] != entry.primaryRecords {
            let missing = entry.primaryRecords &- loadedPerPrimary[p]
            missingTotal &+= missing
            lost.append("\(missing) of the \(entry.primaryRecords) keys whose primary was rank \(p)")
        }
        guard !lost.isEmpty else { return nil }
        let causes = problems.keys.sorted().map { "\(StoreDirectory.dataFileName(rank: $0)): \(problems[$0]!)" }
        return "version \(manifest.version) of store '\(manifest.store)' lost \(missingTotal) of \(manifest.keys) keys ("
            + lost.joined(separator: ", ") + "): every copy is missing or damaged ("
            + (causes.isEmpty ? "no damaged file found" : causes.joined(separator: "; ")) + ")"
    }
}
