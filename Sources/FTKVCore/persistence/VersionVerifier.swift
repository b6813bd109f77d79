/// Checks one committed version across the directories that hold its files (ftkv verify,
/// ftkv inspect): every copy of every data file against the manifest, record by record, and, when
/// some file has no intact copy, whether every key still has one (the same question a restart
/// asks, answered without MPI).
public enum VersionVerifier {
    public enum CopyState: Equatable, Sendable {
        case intact
        case wrongSize(UInt64)
        case damaged(String)
    }

    public struct Copy: Sendable {
        public let path: String
        public let state: CopyState
    }

    public struct Report: Sendable {
        public let manifest: Manifest
        /// Copies found of each old rank's data file (none: missing everywhere).
        public let copies: [[Copy]]
        /// Keys with no intact copy anywhere, and which old primaries they belonged to.
        public let lostKeys: UInt64
        public let lostByPrimary: [Int: UInt64]
        public let bytesRead: UInt64

        public var filesWithoutIntactCopy: [Int] {
            copies.indices.filter { k in !copies[k].contains { $0.state == .intact } }
        }
        public var damagedCopies: Int { copies.reduce(0) { $0 + $1.filter { $0.state != .intact }.count } }
    }

    /// `progress` is called with the bytes read so far (for a progress bar).
    public static func verify(_ manifest: Manifest, in directories: [StoreDirectory], progress: (UInt64) -> Void = { _ in }) -> Report {
        let version = manifest.version
        guard let placement = manifest.placement else {
            return Report(manifest: manifest, copies: [], lostKeys: manifest.keys, lostByPrimary: [:], bytesRead: 0)
        }
        var bytesRead: UInt64 = 0
        var copies: [[Copy]] = []
        var seenPaths = Set<String>()
        for entry in manifest.files {
            var found: [Copy] = []
            for dir in directories {
                let base = dir.dataPath(version, rank: entry.rank)
                guard !seenPaths.contains(base), FileSystem.fileSize(base) != nil else { continue }
                seenPaths.insert(base)
                found.append(Copy(path: base, state: check(entry, in: dir, version: version) { bytesRead += $0; progress(bytesRead) }))
            }
            copies.append(found)
        }
        let bad = copies.indices.filter { k in !copies[k].contains { $0.state == .intact } }
        guard !bad.isEmpty else {
            return Report(manifest: manifest, copies: copies, lostKeys: 0, lostByPrimary: [:], bytesRead: bytesRead)
        }
        // Some rank's part has no intact copy: replay every intact part (base, then deltas, the
        // newest record of a key winning) for the keys whose primary it was, and count the live ones.
        let badSet = Set(bad)
        let fileOf = manifest.rankOfMember
        var latest: [Int: [[UInt8]: (Stamp, Bool)]] = [:]
        for k in copies.indices {
            guard let copy = copies[k].first(where: { $0.state == .intact }) else { continue }
            let dir = StoreDirectory(path: FileSystem.parentDirectory(FileSystem.parentDirectory(copy.path)))
            for (fileName, _) in manifest.files[k].parts {
                guard let reader = try? DataFileReader(path: dir.filePath(version, name: fileName)) else { continue }
                reader.forEachRecord { key, _, stamp, tombstone in
                    let hash = StableHash.hash(key)
                    guard let m = placement.withReplicas(ofHash: hash, { $0.first }), Int(m) < fileOf.count else { return }
                    let p = fileOf[Int(m)]
                    guard badSet.contains(p) else { return }
                    let k = Array(key)
                    if let held = latest[p]?[k], !(stamp > held.0) { return }
                    latest[p, default: [:]][k] = (stamp, !tombstone)
                }
            }
        }
        var lost: [Int: UInt64] = [:]
        for p in bad {
            let have = UInt64(latest[p]?.values.filter { $0.1 }.count ?? 0)
            let want = manifest.files[p].primaryRecords
            if have < want { lost[p] = want - have }
        }
        return Report(manifest: manifest, copies: copies, lostKeys: lost.values.reduce(0, +), lostByPrimary: lost, bytesRead: bytesRead)
    }

    /// One directory's copy of a rank's part (base and deltas), every file read in full.
    static func check(_ entry: Manifest.FileEntry, in dir: StoreDirectory, version: UInt64, read: (UInt64) -> Void) -> CopyState {
        for (fileName, part) in entry.parts {
            let path = dir.filePath(version, name: fileName)
            let prefix = entry.parts.count > 1 ? fileName + ": " : ""
            guard let size = FileSystem.fileSize(path) else { return .damaged(prefix + "missing") }
            guard UInt64(size) == part.bytes else {
                return entry.parts.count > 1 ? .damaged(prefix + "\(size) bytes, committed \(part.bytes)") : .wrongSize(UInt64(size))
            }
            var pending: UInt64 = 0
            let why = DataFileReader.readPart(path, part, rank: entry.rank) { key, value, _, _ in
                pending += UInt64(DataFileFormat.recordSize(keyLen: key.count, valueLen: value.count))
                if pending >= 8 << 20 { read(pending); pending = 0 }
            }
            read(pending)
            if let why { return .damaged(prefix + why) }
        }
        return .intact
    }
}
