import FTKVCore
import Glibc

/// The stores found under the directories given to `ftkv inspect` / `ftkv verify`. Each argument
/// is an ftkv_dir (holding store directories) or one store's directory (holding v<N>/); copies of
/// one store in several directories (one per node) are examined together.
struct StoreFiles {
    let name: String
    let directories: [StoreDirectory]

    /// Every version number seen in any directory, with its first intact manifest (if any) and
    /// the manifest copies found damaged.
    func versions() -> [(number: UInt64, manifest: Manifest?, damagedManifests: [String])] {
        var merged: [UInt64: (Manifest?, [String])] = [:]
        for dir in directories {
            for v in dir.scan() {
                var entry = merged[v.number] ?? (nil, [])
                if entry.0 == nil { entry.0 = v.manifest }
                entry.1 += v.damagedManifests.map { dir.versionPath(v.number) + "/" + $0 }
                merged[v.number] = entry
            }
        }
        return merged.keys.sorted().map { ($0, merged[$0]!.0, merged[$0]!.1) }
    }

    static func isStoreDirectory(_ path: String) -> Bool {
        (FileSystem.list(path) ?? []).contains { $0.count > 1 && $0.first == "v" && UInt64($0.dropFirst()) != nil }
    }

    /// Groups the arguments' stores by name; nil (after a message) if an argument is unreadable.
    static func find(in arguments: [String]) -> [StoreFiles]? {
        var byName: [String: [StoreDirectory]] = [:]
        var order: [String] = []
        for arg in arguments {
            let path = arg.count > 1 && arg.hasSuffix("/") ? String(arg.dropLast()) : arg
            guard let entries = FileSystem.list(path) else {
                fputs("ftkv: cannot read directory '\(arg)'\n", stderr)
                return nil
            }
            let stores: [(String, String)]
            if isStoreDirectory(path) {
                stores = [(String(path.split(separator: "/").last ?? Substring(path)), path)]
            } else {
                stores = entries.sorted().map { ($0, path + "/" + $0) }.filter { isStoreDirectory($0.1) }
            }
            for (name, dir) in stores {
                if byName[name] == nil { order.append(name) }
                byName[name, default: []].append(StoreDirectory(path: dir))
            }
        }
        return order.map { StoreFiles(name: $0, directories: byName[$0]!) }
    }
}

/// Human-readable sizes and times.
enum Format {
    static func bytes(_ n: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n)
        var u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : fixed(v, 1) + " " + units[u]
    }

    /// `v` with exactly `digits` decimals.
    static func fixed(_ v: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (v * scale).rounded() / scale
        var s = "\(scaled)"
        guard digits > 0 else { return String(s.prefix(while: { $0 != "." })) }
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: dot, to: s.endIndex) - 1
            if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
        }
        return s
    }

    static func time(_ seconds: UInt64) -> String {
        var t = time_t(seconds)
        var tm = tm()
        gmtime_r(&t, &tm)
        var buf = [CChar](repeating: 0, count: 64)
        _ = strftime(&buf, 64, "%Y-%m-%d %H:%M:%S UTC", &tm)
        return String(cString: buf)
    }
}

/// A progress bar on stderr for long runs: only on a terminal, only past `threshold` bytes.
struct ProgressBar {
    let total: UInt64
    let label: String
    private let enabled: Bool
    private var lastDrawn = -1

    init(total: UInt64, label: String, threshold: UInt64 = 64 << 20, force: Bool = false) {
        self.total = total
        self.label = label
        enabled = force || (isatty(2) != 0 && total >= threshold)
    }

    mutating func update(_ done: UInt64) {
        guard enabled, total > 0 else { return }
        let percent = Int(min(done, total) * 100 / total)
        guard percent != lastDrawn else { return }
        lastDrawn = percent
        let filled = percent * 30 / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled)
        fputs("\r\(label) [\(bar)] \(percent)% \(Format.bytes(min(done, total))) of \(Format.bytes(total))", stderr)
    }

    mutating func finish() {
        guard enabled, total > 0 else { return }
        update(total)
        fputs("\n", stderr)
    }
}
