/// What one committed version is: written after every rank's data file is on disk, and its
/// presence (any one intact copy) is what makes the version exist. A short text file ending in its
/// own checksum, so people can read it and a damaged copy is recognised (docs/format.md).
public struct Manifest: Equatable, Sendable {
    public static let formatVersion = 1

    public struct FileEntry: Equatable, Sendable {
        /// The rank that wrote it (its rank in the committing job).
        public var rank: Int
        public var bytes: UInt64
        public var records: UInt64
        /// Records in this file whose primary replica was this rank: over all files, the keys.
        public var primaryRecords: UInt64
        /// CRC32C over the record checksums, in file order (the trailer holds it too).
        public var chain: UInt32

        public init(rank: Int, bytes: UInt64, records: UInt64, primaryRecords: UInt64, chain: UInt32) {
            self.rank = rank
            self.bytes = bytes
            self.records = records
            self.primaryRecords = primaryRecords
            self.chain = chain
        }
    }

    public var store: String
    public var version: UInt64
    /// The fence interval the commit closed: a restarted job stamps its writes after it.
    public var interval: UInt64
    public var replicas: Int
    public var consistency: Consistency
    /// Seconds since the epoch when the commit was published (for people; not interpreted).
    public var created: UInt64
    /// Node index of each rank of the committing job: with `replicas` it fixes where every key was.
    public var nodeOfRank: [Int]
    public var files: [FileEntry]

    public init(store: String, version: UInt64, interval: UInt64, replicas: Int, consistency: Consistency,
                created: UInt64, nodeOfRank: [Int], files: [FileEntry]) {
        self.store = store
        self.version = version
        self.interval = interval
        self.replicas = replicas
        self.consistency = consistency
        self.created = created
        self.nodeOfRank = nodeOfRank
        self.files = files
    }

    public var ranks: Int { nodeOfRank.count }
    public var keys: UInt64 { files.reduce(0) { $0 + $1.primaryRecords } }

    /// The placement the committing job used: which ranks held each key.
    public var placement: Placement? {
        guard let view = View(epoch: 0, members: (0..<Int32(ranks)).map { $0 }, nodeOfMember: nodeOfRank) else { return nil }
        return Placement(view: view, replicas: replicas)
    }

    public func encoded() -> [UInt8] {
        var text = "ftkv-manifest \(Manifest.formatVersion)\n"
        text += "store \(store)\n"
        text += "version \(version)\n"
        text += "interval \(interval)\n"
        text += "replicas \(replicas)\n"
        text += "consistency \(consistency == .fence ? "fence" : "sequential")\n"
        text += "created \(created)\n"
        text += "ranks \(ranks)\n"
        for (r, n) in nodeOfRank.enumerated() { text += "rank \(r) node \(n)\n" }
        for f in files {
            text += "file \(f.rank) \(StoreDirectory.dataFileName(rank: f.rank)) bytes \(f.bytes) records \(f.records) primary \(f.primaryRecords) chain \(f.chain)\n"
        }
        var bytes = Array(text.utf8)
        let crc = CRC32C.checksum(bytes)
        bytes += Array("end crc32c \(crc)\n".utf8)
        return bytes
    }

    /// Parses a manifest; nil (never a trap) for anything that is not an intact one.
    public static func parse(_ bytes: [UInt8]) -> Manifest? {
        guard bytes.count <= 64 << 20, bytes.last == UInt8(ascii: "\n") else { return nil }
        // The checksum line is the last one; it covers every byte before it.
        guard let endStart = bytes.dropLast().lastIndex(of: UInt8(ascii: "\n")).map({ $0 + 1 }) else { return nil }
        let endWords = words(bytes[endStart..<(bytes.count - 1)])
        guard endWords.count == 3, endWords[0] == "end", endWords[1] == "crc32c", let crc = UInt32(endWords[2]),
              CRC32C.checksum(Array(bytes[0..<endStart])) == crc else { return nil }
        var lines = bytes[0..<endStart].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { words($0) }
        if lines.last == [] { lines.removeLast() }
        var i = 0
        func field(_ name: String) -> String? {
            guard i < lines.count, lines[i].count == 2, lines[i][0] == name else { return nil }
            i += 1
            return lines[i - 1][1]
        }
        guard field("ftkv-manifest") == String(formatVersion),
              let store = field("store"), (try? StoreConfig.validateName(store)) != nil,
              let version = field("version").flatMap({ UInt64($0) }),
              let interval = field("interval").flatMap({ UInt64($0) }),
              let replicas = field("replicas").flatMap({ Int($0) }), replicas >= 1, replicas <= 64,
              let consistencyText = field("consistency"),
              let created = field("created").flatMap({ UInt64($0) }),
              let ranks = field("ranks").flatMap({ Int($0) }), ranks >= 1, ranks <= 1 << 24,
              lines.count - i == 2 * ranks else { return nil }
        let consistency: Consistency
        switch consistencyText {
        case "fence": consistency = .fence
        case "sequential": consistency = .sequential
        default: return nil
        }
        var nodes: [Int] = []
        for r in 0..<ranks {
            let w = lines[i]
            guard w.count == 4, w[0] == "rank", Int(w[1]) == r, w[2] == "node", let n = Int(w[3]), n >= 0, n < ranks else { return nil }
            nodes.append(n)
            i += 1
        }
        var files: [FileEntry] = []
        for r in 0..<ranks {
            let w = lines[i]
            guard w.count == 11, w[0] == "file", Int(w[1]) == r, w[2] == StoreDirectory.dataFileName(rank: r),
                  w[3] == "bytes", let b = UInt64(w[4]), w[5] == "records", let rc = UInt64(w[6]),
                  w[7] == "primary", let pr = UInt64(w[8]), pr <= rc, w[9] == "chain", let ch = UInt32(w[10]) else { return nil }
            files.append(FileEntry(rank: r, bytes: b, records: rc, primaryRecords: pr, chain: ch))
            i += 1
        }
        return Manifest(store: store, version: version, interval: interval, replicas: replicas, consistency: consistency,
                        created: created, nodeOfRank: nodes, files: files)
    }

    private static func words(_ line: ArraySlice<UInt8>) -> [String] {
        line.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
    }
}
