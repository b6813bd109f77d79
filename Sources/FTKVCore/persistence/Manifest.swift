/// What one committed version is: written after every rank's data file is on disk, and its
/// presence (any one intact copy) is what makes the version exist. A short text file ending in its
/// own checksum, so people can read it and a damaged copy is recognised (docs/format.md).
public struct Manifest: Equatable, Sendable {
    public static let formatVersion = 1

    /// One file of a rank's chain: the base file (every record) or a delta (what changed since
    /// the version before, tombstones included).
    public struct Part: Equatable, Sendable {
        /// The version the file was written for (its header says so).
        public var written: UInt64
        public var bytes: UInt64
        public var records: UInt64
        /// CRC32C over the record checksums, in file order (the trailer holds it too).
        public var chain: UInt32

        public init(written: UInt64, bytes: UInt64, records: UInt64, chain: UInt32) {
            self.written = written
            self.bytes = bytes
            self.records = records
            self.chain = chain
        }
    }

    /// What one rank of the committing job wrote: a base file and the deltas on top of it, all
    /// present (as hard links) in the version's directory.
    public struct FileEntry: Equatable, Sendable {
        /// The rank that wrote it (its rank in the committing job).
        public var rank: Int
        public var base: Part
        public var deltas: [Part]
        /// Live keys this rank was the primary of at this version: over all ranks, the keys.
        public var primaryRecords: UInt64

        public init(rank: Int, base: Part, deltas: [Part] = [], primaryRecords: UInt64) {
            self.rank = rank
            self.base = base
            self.deltas = deltas
            self.primaryRecords = primaryRecords
        }

        /// Base first, then deltas oldest first, with their file names.
        public var parts: [(name: String, part: Part)] {
            [(StoreDirectory.dataFileName(rank: rank), base)]
                + deltas.map { (StoreDirectory.deltaFileName(rank: rank, written: $0.written), $0) }
        }

        public var bytes: UInt64 { parts.reduce(0) { $0 + $1.part.bytes } }

        func lines() -> String {
            var text = "file \(rank) \(StoreDirectory.dataFileName(rank: rank)) bytes \(base.bytes) records \(base.records) primary \(primaryRecords) chain \(base.chain) written \(base.written)\n"
            for d in deltas {
                text += "delta \(rank) \(StoreDirectory.deltaFileName(rank: rank, written: d.written)) bytes \(d.bytes) records \(d.records) chain \(d.chain) written \(d.written)\n"
            }
            return text
        }

        /// Parses the lines of one rank's entry (a file line, then its delta lines).
        static func parse(_ lines: [[String]], rank r: Int, version: UInt64) -> FileEntry? {
            guard let w = lines.first, w.count == 13, w[0] == "file", Int(w[1]) == r, w[2] == StoreDirectory.dataFileName(rank: r),
                  w[3] == "bytes", let b = UInt64(w[4]), w[5] == "records", let rc = UInt64(w[6]),
                  w[7] == "primary", let pr = UInt64(w[8]), w[9] == "chain", let ch = UInt32(w[10]),
                  w[11] == "written", let wr = UInt64(w[12]), wr >= 1, wr <= version else { return nil }
            var entry = FileEntry(rank: r, base: Part(written: wr, bytes: b, records: rc, chain: ch), primaryRecords: pr)
            var last = wr
            for d in lines.dropFirst() {
                guard d.count == 11, d[0] == "delta", Int(d[1]) == r, d[3] == "bytes", let db = UInt64(d[4]),
                      d[5] == "records", let drc = UInt64(d[6]), d[7] == "chain", let dch = UInt32(d[8]),
                      d[9] == "written", let dwr = UInt64(d[10]), dwr > last, dwr <= version,
                      d[2] == StoreDirectory.deltaFileName(rank: r, written: dwr) else { return nil }
                entry.deltas.append(Part(written: dwr, bytes: db, records: drc, chain: dch))
                last = dwr
            }
            // The keys a rank was primary of are among the records of its chain.
            guard pr <= rc + entry.deltas.reduce(0, { $0 + $1.records }) else { return nil }
            return entry
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
    /// Member id of each rank (its rank in the communicator given to kv_open; placement hashes
    /// ids). Equal to the rank unless the committing store had shrunk after failures.
    public var memberOfRank: [Int32]
    public var files: [FileEntry]

    public init(store: String, version: UInt64, interval: UInt64, replicas: Int, consistency: Consistency,
                created: UInt64, nodeOfRank: [Int], memberOfRank: [Int32]? = nil, files: [FileEntry]) {
        self.memberOfRank = memberOfRank ?? (0..<Int32(nodeOfRank.count)).map { $0 }
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

    /// The placement the committing job used: which members held each key (see `rankOfMember`).
    public var placement: Placement? {
        guard let view = View(epoch: 0, members: memberOfRank, nodeOfMember: nodeOfRank) else { return nil }
        return Placement(view: view, replicas: replicas)
    }

    /// The rank (file number) of each member id the placement names, indexed by id (-1: none).
    public var rankOfMember: [Int] {
        var ranks = [Int](repeating: -1, count: Int(memberOfRank.max() ?? 0) + 1)
        for (r, m) in memberOfRank.enumerated() { ranks[Int(m)] = r }
        return ranks
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
        for (r, n) in nodeOfRank.enumerated() {
            // The member id only where it differs from the rank (a store that shrank).
            text += "rank \(r) node \(n)" + (memberOfRank[r] == Int32(r) ? "\n" : " member \(memberOfRank[r])\n")
        }
        for f in files { text += f.lines() }
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
              lines.count - i >= 2 * ranks else { return nil }
        let consistency: Consistency
        switch consistencyText {
        case "fence": consistency = .fence
        case "sequential": consistency = .sequential
        default: return nil
        }
        var nodes: [Int] = []
        var members: [Int32] = []
        for r in 0..<ranks {
            let w = lines[i]
            guard w.count == 4 || w.count == 6, w[0] == "rank", Int(w[1]) == r, w[2] == "node", let n = Int(w[3]), n >= 0, n < ranks
            else { return nil }
            var member = Int32(r)
            if w.count == 6 {
                guard w[4] == "member", let m = Int32(w[5]), m >= 0, m < 1 << 24 else { return nil }
                member = m
            }
            // Ascending ids: the committing communicator's ranks follow member order.
            guard members.last.map({ $0 < member }) ?? true else { return nil }
            nodes.append(n)
            members.append(member)
            i += 1
        }
        var files: [FileEntry] = []
        for r in 0..<ranks {
            var end = i + 1
            while end < lines.count, lines[end].first == "delta" { end += 1 }
            guard i < lines.count, let entry = FileEntry.parse(Array(lines[i..<end]), rank: r, version: version) else { return nil }
            files.append(entry)
            i = end
        }
        guard i == lines.count else { return nil }
        return Manifest(store: store, version: version, interval: interval, replicas: replicas, consistency: consistency,
                        created: created, nodeOfRank: nodes, memberOfRank: members, files: files)
    }

    private static func words(_ line: ArraySlice<UInt8>) -> [String] {
        line.split(separator: UInt8(ascii: " ")).map { String(decoding: $0, as: UTF8.self) }
    }
}
