/// Key -> replica set, the same on every rank: a consistent-hash ring of virtual points per member
/// (so a view change moves only the keys of the members that changed), replicas on the next
/// members in ring order, preferring members on nodes not used yet, so losing a node loses at most
/// one copy while there are at least r nodes. Replica sets are precomputed per ring segment, and
/// a table of hash-space buckets says where each bucket's segments start, so a lookup reads one
/// bucket entry and steps over the point or two inside it.
public struct Placement: Sendable {
    public let view: View
    public let replicas: Int
    let points: [UInt64]              // sorted ring positions
    private let sets: [Int32]         // points.count * replicas ranks, primary first
    /// bucketStart[b]: the first point at or after b << bucketShift (points.count if none). A
    /// binary search over the points took about 9 unpredictable branches, most of the placement
    /// cost of a local get (perf, docs/benchmarks.md).
    private let bucketStart: [UInt32]
    private let bucketShift: UInt64

    public init(view: View, replicas requested: Int) {
        self.view = view
        let n = view.members.count
        replicas = max(1, min(requested, n))
        // Enough virtual points for balance, few enough that big jobs stay cheap.
        let perMember = max(16, min(128, 65_536 / max(n, 1)))
        var ring: [(UInt64, Int)] = []
        ring.reserveCapacity(n * perMember)
        for (m, rank) in view.members.enumerated() {
            for v in 0..<perMember {
                var pair: (UInt32, UInt32) = (UInt32(bitPattern: rank).littleEndian, UInt32(v).littleEndian)
                let h = withUnsafeBytes(of: &pair) { StableHash.hash($0, seed: 0x7269_6e67) }
                ring.append((h, m))
            }
        }
        ring.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        points = ring.map { $0.0 }
        // About two buckets per point, so most buckets hold none or one.
        var bucketBits = 1
        while bucketBits < 20 && (1 << bucketBits) < 2 * points.count { bucketBits += 1 }
        bucketShift = UInt64(64 - bucketBits)
        var starts = [UInt32](repeating: 0, count: 1 << bucketBits)
        var next = 0
        for b in starts.indices {
            let lowest = UInt64(b) << (64 - UInt64(bucketBits))
            while next < points.count && points[next] < lowest { next += 1 }
            starts[b] = UInt32(next)
        }
        bucketStart = starts
        let wantNodes = min(replicas, view.nodeCount)
        var sets: [Int32] = []
        sets.reserveCapacity(ring.count * replicas)
        for start in 0..<ring.count {
            var chosen: [Int] = []
            var usedNodes = Set<Int>()
            // First pass: distinct members on distinct nodes, until r nodes (or all nodes) are used.
            var i = start
            while usedNodes.count < wantNodes {
                let m = ring[i].1
                if !usedNodes.contains(view.nodeOfMember[m]) && !chosen.contains(m) {
                    chosen.append(m)
                    usedNodes.insert(view.nodeOfMember[m])
                }
                i = (i + 1) % ring.count
            }
            // Second pass: fewer nodes than replicas, so fill with further distinct members.
            i = start
            while chosen.count < replicas {
                let m = ring[i].1
                if !chosen.contains(m) { chosen.append(m) }
                i = (i + 1) % ring.count
            }
            sets.append(contentsOf: chosen.map { view.members[$0] })
        }
        self.sets = sets
    }

    /// The ring segment a key hash falls in: the first point at or after it, wrapping. Every
    /// point before its bucket's start is below the bucket, so below the hash.
    @inline(__always)
    func segment(_ hash: UInt64) -> Int {
        var i = Int(bucketStart[Int(truncatingIfNeeded: hash >> bucketShift)])
        while i < points.count && points[i] < hash { i += 1 }
        return i == points.count ? 0 : i
    }

    /// Calls body with the replica ranks of a key hash, primary first.
    @inline(__always)
    public func withReplicas<R>(ofHash hash: UInt64, _ body: (ArraySlice<Int32>) throws -> R) rethrows -> R {
        guard !points.isEmpty else { return try body([]) } // an empty view holds nothing
        let s = segment(hash) * replicas
        return try body(sets[s..<(s + replicas)])
    }

    public func replicaRanks(ofHash hash: UInt64) -> [Int32] {
        withReplicas(ofHash: hash) { Array($0) }
    }

    /// The share of the hash space (so, of keys) each replica set holds (for ftkv inspect).
    public func replicaSetShares() -> [[Int32]: Double] {
        var shares: [[Int32]: Double] = [:]
        for i in points.indices {
            // Segment i takes the hashes after the previous point up to and including point i.
            let previous = i == 0 ? points[points.count - 1] : points[i - 1]
            let width = Double(points[i] &- previous) / 18_446_744_073_709_551_616.0
            let set = Array(sets[(i * replicas)..<((i + 1) * replicas)])
            shares[set, default: 0] += points.count == 1 ? 1 : width
        }
        return shares
    }

    /// The share of the hash space each rank is the primary of.
    public func primaryShares() -> [Int32: Double] {
        var shares: [Int32: Double] = [:]
        for (set, share) in replicaSetShares() { shares[set[0], default: 0] += share }
        return shares
    }
}
