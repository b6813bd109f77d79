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
                let path = dir.dataPath(version, rank: entry.rank)
                guard !seenPaths.contains(path), let size = FileSystem.fileSize(path) else { continue }
                seenPaths.insert(path)
                guard UInt64(size) == entry.bytes else {
                    found.append(Copy(path: path, state: .wrongSize(UInt64(size))))
                    continue
                }
                found.append(Copy(path: path, state: check(path: path, entry: entry, version: version) { bytesRead += $0; progress(bytesRead) }))
            }
            copies.append(found)
        }
        let bad = copies.indices.filter { k in !copies[k].contains { $0.state == .intact } }
        guard !bad.isEmpty else {
            return Report(manifest: manifest, copies: copies, lostKeys: 0, lostByPrimary: [:], bytesRead: bytesRead)
        }
        // Some file has no intact copy: collect the distinct keys of its primaries from every
        // intact record anywhere (damaged copies contribute their verified prefix).
        let badSet = Set(bad)
        var keys: [Int: Set<[UInt8]>] = [:]
        for k in copies.indices {
            for copy in copies[k] {
                if case .wrongSize = copy.state { continue }
                guard let reader = try? DataFileReader(path: copy.path) else { continue }
                reader.forEachRecord { key, _, _ in
                    let hash = StableHash.hash(key)
                    guard let p = placement.withReplicas(ofHash: hash, { $0.first }), badSet.contains(Int(p)) else { return }
                    keys[Int(p), default: []].insert(Array(key))
                }
            }
        }
        var lost: [Int: UInt64] = [:]
        for p in bad {
            let have = UInt64(keys[p]?.count ?? 0)
            let want = manifest.files[p].primaryRecords
            if have < want { lost[p] = want - have }
        }
        return Report(manifest: manifest, copies: copies, lostKeys: lost.values.reduce(0, +), lostByPrimary: lost, bytesRead: bytesRead)
    }

    /// One copy of a data file, read in full.
    static func check(path: String, entry: Manifest.FileEntry, version: UInt64, read: (UInt64) -> Void) -> CopyState {
        guard let reader = try? DataFileReader(path: path) else { return .damaged("cannot be opened") }
        switch reader.header() {
        case .failure(let d): return .damaged(d.description)
        case .success(let h):
            guard h.storeVersion == version, h.writerRank == UInt32(entry.rank) else {
                return .damaged("its header names version \(h.storeVersion), rank \(h.writerRank)")
            }
        }
        var pending: UInt64 = 0
        let (count, damage) = reader.forEachRecord { key, value, _ in
            pending += UInt64(DataFileFormat.recordSize(keyLen: key.count, valueLen: value.count))
            if pending >= 8 << 20 { read(pending); pending = 0 }
        }
        read(pending)
        if let damage { return .damaged(damage.description) }
        guard count == entry.records else { return .damaged("holds \(count) records, the manifest says \(entry.records)") }
        if case .success(let t) = reader.trailer(), t.chain != entry.chain { return .damaged("its checksum chain differs from the manifest's") }
        return .intact
    }
}
