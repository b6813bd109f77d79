import Testing
@testable import FTKVCore
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk formats without MPI: checksums, data files and manifests written, read back, and
/// damaged at every byte (a damaged copy must be reported, never read as other bytes).
@Suite("Persistence formats", .serialized)
struct PersistenceTests {
    struct Rec: Equatable {
        var key: [UInt8]
        var value: [UInt8]
        var stamp: Stamp
    }

    static func records(_ n: Int, seed: UInt64 = 1) -> [Rec] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { i in
            let klen = 1 + Int(rng.next() % 40)
            let vlen = i % 7 == 0 ? 0 : Int(rng.next() % 200)
            return Rec(key: (0..<klen).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
                       value: (0..<vlen).map { _ in UInt8(truncatingIfNeeded: rng.next()) },
                       stamp: Stamp(fence: rng.next() % 9, rank: UInt32(rng.next() % 4), seq: rng.next() % 1000))
        }
    }

    static func temporaryDirectory() -> String {
        var template = Array("/tmp/ftkv-unit.XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        return String(cString: p!)
    }

    static func writeFile(_ recs: [Rec], to path: String, version: UInt64 = 3, rank: UInt32 = 1) throws -> DataFileWriter.Summary {
        let w = try DataFileWriter(path: path, header: .init(storeVersion: version, writerRank: rank, rankCount: 4), bufferBytes: 4096)
        for r in recs {
            try r.key.withUnsafeBytes { k in try r.value.withUnsafeBytes { v in try w.append(key: k, value: v, stamp: r.stamp) } }
        }
        return try w.finish()
    }

    static func readAll(_ reader: DataFileReader) -> ([Rec], DataFileDamage?) {
        var out: [Rec] = []
        let (_, damage) = reader.forEachRecord { k, v, s, _ in out.append(Rec(key: Array(k), value: Array(v), stamp: s)) }
        return (out, damage)
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = CRC32C.checksum(bytes)
        let split = CRC32C.checksum(Array(bytes[333...]), continuing: CRC32C.checksum(Array(bytes[..<333])))
        #expect(whole == split)
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func dataFileRoundTripsIncludingRecordsLargerThanTheBuffer() throws {
        let dir = Self.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        var recs = Self.records(500)
        recs.append(Rec(key: [1, 2, 3], value: [UInt8](repeating: 0xAB, count: 100_000), stamp: Stamp(fence: 2, rank: 0, seq: 1)))
        let path = dir + "/r000001.dat"
        let summary = try Self.writeFile(recs, to: path)
        #expect(summary.records == UInt64(recs.count))
        #expect(FileSystem.fileSize(path) == Int(summary.bytes))
        let reader = try DataFileReader(path: path)
        #expect(try reader.header().get() == .init(storeVersion: 3, writerRank: 1, rankCount: 4))
        #expect(try reader.trailer().get().chain == summary.chain)
        let (back, damage) = Self.readAll(reader)
        #expect(damage == nil)
        #expect(back == recs)
    }

    @Test func tombstonesRoundTripAndCarryNoValue() throws {
        let dir = Self.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let w = try DataFileWriter(path: dir + "/d.dat", header: .init(storeVersion: 2, writerRank: 0, rankCount: 1))
        let value: [UInt8] = [1, 2, 3]
        try [UInt8]([9]).withUnsafeBytes { k in try value.withUnsafeBytes { v in
            try w.append(key: k, value: v, stamp: Stamp(fence: 1, rank: 0, seq: 1))
            try w.append(key: k, value: v, stamp: Stamp(fence: 2, rank: 0, seq: 1), tombstone: true)
        } }
        _ = try w.finish()
        var seen: [(Int, Bool)] = []
        let (count, damage) = try DataFileReader(path: dir + "/d.dat").forEachRecord { _, v, _, t in seen.append((v.count, t)) }
        #expect(count == 2 && damage == nil)
        #expect(seen.map { $0.0 } == [3, 0] && seen.map { $0.1 } == [false, true])
    }

    /// Every single-byte change anywhere in a data file is either reported, or (in padding, which
    /// no checksum needs) harmless: the records read are always exactly the ones written.
    @Test func everyFlippedByteIsDetectedOrHarmless() throws {
        let dir = Self.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let recs = Self.records(12)
        _ = try Self.writeFile(recs, to: dir + "/f.dat")
        let pristine = FileSystem.readAll(dir + "/f.dat")!
        var detected = 0
        for i in pristine.indices {
            var bytes = pristine
            bytes[i] ^= 0x41
            let (back, damage) = Self.readAll(DataFileReader(bytes: bytes))
            // Whatever was yielded is a prefix of what was written.
            #expect(Array(recs.prefix(back.count)) == back, "byte \(i)")
            if damage != nil { detected += 1 } else { #expect(back == recs, "byte \(i)") }
        }
        // Only padding bytes may go unnoticed.
        #expect(detected >= pristine.count - 12 * 7)
        // Truncation at every length is reported.
        for n in 0..<pristine.count {
            let (back, damage) = Self.readAll(DataFileReader(bytes: Array(pristine.prefix(n))))
            #expect(damage != nil, "truncated to \(n)")
            #expect(Array(recs.prefix(back.count)) == back)
        }
    }

    static func sampleManifest() -> Manifest {
        Manifest(store: "ckpt", version: 7, interval: 19, replicas: 2, consistency: .fence, created: 1_700_000_000,
                 nodeOfRank: [0, 0, 1, 1],
                 files: (0..<4).map { r in
                     Manifest.FileEntry(rank: r, base: .init(written: r == 2 ? 6 : 3, bytes: 1000 + UInt64(r), records: 10, chain: 77),
                                        deltas: r == 1 ? [.init(written: 5, bytes: 200, records: 2, chain: 9), .init(written: 7, bytes: 96, records: 1, chain: 4)] : [],
                                        primaryRecords: 5)
                 })
    }

    @Test func manifestOfAShrunkStoreKeepsItsMemberIds() {
        var m = Self.sampleManifest()
        m.memberOfRank = [0, 2, 3, 7]
        let parsed = Manifest.parse(m.encoded())
        #expect(parsed == m)
        #expect(parsed?.rankOfMember == [0, -1, 1, 2, -1, -1, -1, 3])
        #expect(String(decoding: m.encoded(), as: UTF8.self).contains("rank 3 node 1 member 7\n"))
        // Ids must ascend (ranks follow member order).
        m.memberOfRank = [0, 3, 2, 7]
        #expect(Manifest.parse(m.encoded()) == nil)
    }

    @Test func manifestRoundTripsAndRefusesAnyChange() {
        let m = Self.sampleManifest()
        let bytes = m.encoded()
        #expect(Manifest.parse(bytes) == m)
        #expect(m.keys == 20)
        for i in bytes.indices {
            var b = bytes
            b[i] ^= 0x04
            let parsed = Manifest.parse(b)
            #expect(parsed == nil || parsed == m, "byte \(i)")
        }
        for n in 0..<bytes.count { #expect(Manifest.parse(Array(bytes.prefix(n))) == nil) }
    }

    /// A million inputs to the on-disk readers: random bytes and mutated good files. None may trap;
    /// data-file records read must be ones that were written.
    @Test func fuzzTheReaders() throws {
        let dir = Self.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let recs = Self.records(6, seed: 9)
        _ = try Self.writeFile(recs, to: dir + "/f.dat")
        let dataSeed = FileSystem.readAll(dir + "/f.dat")!
        let manifestSeed = Self.sampleManifest().encoded()
        var rng = SplitMix64(seed: 2026)
        var inputs = 0
        func mutate(_ seed: [UInt8]) -> [UInt8] {
            var b = seed
            switch rng.next() % 5 {
            case 0: // random bytes
                b = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1: // a few flips
                for _ in 0..<(1 + rng.next() % 4) where !b.isEmpty { b[Int(rng.next() % UInt64(b.count))] ^= UInt8(truncatingIfNeeded: rng.next() | 1) }
            case 2: // truncate
                b = Array(b.prefix(Int(rng.next() % UInt64(b.count + 1))))
            case 3: // overwrite a 4-byte field with an extreme value
                if b.count >= 4 {
                    let at = Int(rng.next() % UInt64(b.count - 3))
                    let v: UInt32 = [0, 1, 0xFFFF_FFFF, 0x8000_0000, 65_537][Int(rng.next() % 5)]
                    for j in 0..<4 { b[at + j] = UInt8(truncatingIfNeeded: v >> (8 * j)) }
                }
            default: // splice with itself
                let cut = Int(rng.next() % UInt64(b.count + 1))
                b = Array(b[cut...]) + Array(b[..<cut])
            }
            return b
        }
        for _ in 0..<500_000 {
            let (back, _) = Self.readAll(DataFileReader(bytes: mutate(dataSeed)))
            for r in back { #expect(recs.contains(r)) }
            inputs += 1
        }
        for _ in 0..<500_000 {
            let parsed = Manifest.parse(mutate(manifestSeed))
            #expect(parsed == nil || parsed == Self.sampleManifest())
            inputs += 1
        }
        #expect(inputs == 1_000_000)
    }

    @Test func restartPlanChoosesSharesAndPicksSources() throws {
        var a = RestartPlan.DirectoryReport(), b = RestartPlan.DirectoryReport()
        a.newestComplete = 3; a.newestSeen = 4
        b.newestComplete = 5; b.newestSeen = 5; b.hasRequested = 1
        #expect(try RestartPlan.choose(.latest, reports: [a, b])! == (5, 1))
        #expect(try RestartPlan.choose(.none, reports: [a, b]) == nil)
        #expect(try RestartPlan.choose(.version(2), reports: [b, a])! == (2, 0))
        #expect(throws: KVFailure.self) { try RestartPlan.choose(.version(2), reports: [a]) }
        #expect(try RestartPlan.choose(.latest, reports: [RestartPlan.DirectoryReport()]) == nil)
        // Shared directory: both see every file; the bytes are spread.
        let readers = RestartPlan.assignReaders(available: [[2, 2, 2, 2], [2, 2, 2, 2]], fileBytes: [10, 10, 10, 10])
        #expect(readers.compactMap { $0 }.filter { $0 == 0 }.count == 2)
        // Per-rank directories: each reads its own; a file nobody sees has no reader.
        #expect(RestartPlan.assignReaders(available: [[2, 0, 0], [0, 2, 0]], fileBytes: [5, 5, 5]) == [0, 1, nil])
        // The second tier (1) only where no rank has its own copy (2); spread over the ranks.
        #expect(RestartPlan.assignReaders(available: [[1, 1, 1], [1, 2, 1]], fileBytes: [5, 5, 5]) == [0, 1, 0])
        #expect(RestartPlan.source(of: [2, 0, 1], fileOf: [0, 1, 2], usable: [true, true, false]) == 0)
        #expect(RestartPlan.source(of: [2, 1], fileOf: [0, 1, 2], usable: [true, false, false]) == nil)
        // After a shrink, member ids are not file numbers: members 0, 2, 5 wrote files 0, 1, 2.
        #expect(RestartPlan.source(of: [5, 2], fileOf: [0, -1, 1, -1, -1, 2], usable: [true, false, true]) == 2)
        #expect(RestartPlan.source(of: [3, 2], fileOf: [0, -1, 1, -1, -1, 2], usable: [true, true, true]) == 1)
        let m = Self.sampleManifest()
        #expect(RestartPlan.loss(manifest: m, loadedPerPrimary: [5, 5, 5, 5], problems: [:]) == nil)
        let text = RestartPlan.loss(manifest: m, loadedPerPrimary: [5, 3, 5, 5], problems: [1: "is damaged", 2: "missing"])!
        #expect(text.contains("lost 2 of 20 keys") && text.contains("r000001.dat: is damaged") && text.contains("rank 1"))
    }

    @Test func directoryScanAndGarbageCollection() throws {
        let base = Self.temporaryDirectory()
        defer { for v in 1...6 { FileSystem.removeTree(base + "/ckpt/" + StoreDirectory.versionName(UInt64(v))) }; FileSystem.removeTree(base + "/ckpt"); FileSystem.removeTree(base) }
        let dir = StoreDirectory(base: base, store: "ckpt")
        #expect(dir.scan().isEmpty)
        for v in UInt64(1)...5 {
            try FileSystem.makeDirectories(dir.versionPath(v))
            guard v != 4 else { continue } // v4: an interrupted commit, no manifest
            var m = Self.sampleManifest()
            m.version = v
            m.files = m.files.map { var f = $0; f.base.written = v; f.deltas = []; return f }
            try FileSystem.writeAtomically(m.encoded(), to: dir.manifestPath(v, rank: 0), temporarySuffix: ".tmp")
        }
        try FileSystem.writeAtomically(Array("garbage".utf8), to: dir.manifestPath(5, rank: 1), temporarySuffix: ".tmp")
        let scan = dir.scan()
        #expect(scan.map { $0.number } == [1, 2, 3, 4, 5])
        #expect(scan.map { $0.isComplete } == [true, true, true, false, true])
        #expect(scan[4].damagedManifests == [StoreDirectory.manifestName(rank: 1)])
        dir.collectGarbage(keep: 2)
        #expect(dir.scan().map { $0.number } == [3, 5])
    }
}
