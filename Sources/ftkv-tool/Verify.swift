import FTKVCore
import Glibc

/// `ftkv verify [--version N] [--progress] DIR...`: reads every copy of every data file of every
/// complete version (or one), checks each record's checksum, sizes and counts against the
/// manifest, and whether every key still has an intact copy.
/// Exit status: 0 all intact; 1 damage found, but every key of every version has an intact copy
/// (a restart repairs it); 2 some version lost keys (its restart fails with KV_EDATALOSS);
/// 64 usage; 66 unreadable directory.
enum Verify {
    static func run(arguments: [String]) -> Int32 {
        var dirs: [String] = []
        var only: UInt64?
        var forceProgress = false
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if a == "--version", i + 1 < arguments.count, let v = UInt64(arguments[i + 1]) {
                only = v
                i += 2
                continue
            }
            if a == "--progress" { forceProgress = true; i += 1; continue }
            if a.hasPrefix("-") { dirs = []; break }
            dirs.append(a)
            i += 1
        }
        guard !dirs.isEmpty else {
            fputs("usage: ftkv verify [--version N] [--progress] DIR...\n", stderr)
            return 64
        }
        guard let stores = StoreFiles.find(in: dirs) else { return 66 }
        var worst: Int32 = 0
        var checked = 0
        for store in stores {
            for v in store.versions() where only == nil || v.number == only {
                for d in v.damagedManifests {
                    print("DAMAGED  \(store.name) v\(v.number): manifest copy \(d)")
                    worst = max(worst, 1)
                }
                guard let m = v.manifest else {
                    print("skipped  \(store.name) v\(v.number): incomplete (no intact manifest), a restart ignores it")
                    continue
                }
                checked += 1
                let total = m.files.reduce(UInt64(0)) { $0 + $1.bytes }
                var bar = ProgressBar(total: total, label: "verifying \(store.name) v\(m.version)", force: forceProgress)
                let t0 = now()
                let report = VersionVerifier.verify(m, in: store.directories) { bar.update($0) }
                bar.finish()
                let seconds = now() - t0
                for (k, copies) in report.copies.enumerated() {
                    if copies.isEmpty { print("MISSING  \(store.name) v\(m.version): \(StoreDirectory.dataFileName(rank: k)) (rank \(k)) is in none of the directories") }
                    for c in copies {
                        switch c.state {
                        case .intact: break
                        case .wrongSize(let s): print("DAMAGED  \(c.path): \(s) bytes, committed \(m.files[k].base.bytes)")
                        case .damaged(let why): print("DAMAGED  \(c.path): \(why)")
                        }
                    }
                }
                let speed = seconds > 0 ? " at " + Format.bytes(UInt64(Double(report.bytesRead) / seconds)) + "/s" : ""
                if report.lostKeys > 0 {
                    let detail = report.lostByPrimary.keys.sorted().map { "\(report.lostByPrimary[$0]!) of rank \($0)'s" }.joined(separator: ", ")
                    print("LOST     \(store.name) v\(m.version): \(report.lostKeys) of \(m.keys) keys have no intact copy (\(detail)); a restart of this version fails with KV_EDATALOSS")
                    worst = 2
                } else if report.damagedCopies > 0 || !report.filesWithoutIntactCopy.isEmpty {
                    print("REPAIRABLE \(store.name) v\(m.version): every one of \(m.keys) keys has an intact copy; a restart loads the others from replicas")
                    worst = max(worst, 1)
                } else {
                    print("OK       \(store.name) v\(m.version): \(m.ranks) files, \(m.keys) keys x \(m.replicas) copies, \(Format.bytes(report.bytesRead)) checked\(speed)")
                }
            }
        }
        if checked == 0 && worst == 0 {
            print(only.map { "no complete version \($0) found" } ?? "no complete version found")
            return 2
        }
        return worst
    }
}
