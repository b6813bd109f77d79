/// The files of one store under a directory (ftkv_dir/<store name>): one subdirectory per
/// version, v<number>, holding each rank's data file r<rank>.dat and the manifest copies
/// MANIFEST-r<rank>. Several ranks may share the directory (one node) or each have its own.
public struct StoreDirectory: Sendable {
    public let path: String

    public init(base: String, store: String) {
        path = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/" + store
    }

    public init(path: String) { self.path = path }

    public static func dataFileName(rank: Int) -> String { "r" + padded(rank, 6) + ".dat" }
    public static func deltaFileName(rank: Int, written: UInt64) -> String {
        "r" + padded(rank, 6) + ".d" + padded(Int(truncatingIfNeeded: written), 12) + ".dat"
    }
    public static func manifestName(rank: Int) -> String { "MANIFEST-r" + padded(rank, 6) }
    public static func versionName(_ v: UInt64) -> String { "v" + padded(Int(truncatingIfNeeded: v), 12) }

    public func versionPath(_ v: UInt64) -> String { path + "/" + StoreDirectory.versionName(v) }
    public func dataPath(_ v: UInt64, rank: Int) -> String { versionPath(v) + "/" + StoreDirectory.dataFileName(rank: rank) }
    public func filePath(_ v: UInt64, name: String) -> String { versionPath(v) + "/" + name }
    public func manifestPath(_ v: UInt64, rank: Int) -> String { versionPath(v) + "/" + StoreDirectory.manifestName(rank: rank) }

    static func padded(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    /// What a scan of the directory found about one version.
    public struct VersionState: Sendable {
        public var number: UInt64
        /// The first intact manifest copy; nil: the version never completed (or every copy is damaged).
        public var manifest: Manifest?
        /// Manifest copies present but unreadable or damaged.
        public var damagedManifests: [String] = []
        public var isComplete: Bool { manifest != nil }
    }

    /// Every version directory, oldest first. A missing directory is an empty store.
    /// `requireAllFiles` (the shared second tier, filled by each rank on its own time): a version
    /// is complete only once every data file its manifest lists is there with its size too.
    public func scan(requireAllFiles: Bool = false) -> [VersionState] {
        var found: [VersionState] = []
        for name in FileSystem.list(path) ?? [] {
            guard name.count > 1, name.first == "v", let v = UInt64(name.dropFirst()), v > 0 else { continue }
            found.append(state(of: v, requireAllFiles: requireAllFiles))
        }
        return found.sorted { $0.number < $1.number }
    }

    /// What the directory holds of version `v` (see scan).
    public func state(of v: UInt64, requireAllFiles: Bool = false) -> VersionState {
        var state = VersionState(number: v)
        let dir = versionPath(v)
        for file in (FileSystem.list(dir) ?? []).sorted() where file.hasPrefix("MANIFEST-r") && !file.contains(".tmp") {
            if let bytes = FileSystem.readAll(dir + "/" + file), let m = Manifest.parse(bytes), m.version == v {
                let filesThere = !requireAllFiles || m.files.allSatisfy { f in
                    f.parts.allSatisfy { FileSystem.fileSize(filePath(v, name: $0.name)) == Int($0.part.bytes) }
                }
                if state.manifest == nil && filesThere { state.manifest = m }
            } else {
                state.damagedManifests.append(file)
            }
        }
        return state
    }

    /// Removes every version but the newest `keep` complete ones (incomplete versions older than
    /// the newest are leftovers of interrupted commits). Called only after a newer version is
    /// complete; ranks sharing the directory may race here, which is harmless.
    public func collectGarbage(keep: Int, requireAllFiles: Bool = false) {
        let versions = scan(requireAllFiles: requireAllFiles)
        let kept = Set(versions.filter { $0.isComplete }.suffix(keep).map { $0.number })
        guard let newest = kept.max() else { return }
        for v in versions where !kept.contains(v.number) && v.number < newest {
            // Manifests first: a crash half-way leaves an incomplete version, never a complete-
            // looking one with data files missing.
            let dir = versionPath(v.number)
            for name in FileSystem.list(dir) ?? [] where name.hasPrefix("MANIFEST") { FileSystem.removeFile(dir + "/" + name) }
            FileSystem.removeTree(dir)
        }
    }
}
