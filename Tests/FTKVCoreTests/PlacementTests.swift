import Testing
@testable import FTKVCore

/// Views of n members with a variety of node layouts and rank numberings.
private func sampleViews(n: Int) -> [(String, View)] {
    var rng = SplitMix64(seed: UInt64(n) * 1000 + 17)
    let contiguous = (0..<n).map { Int32($0) }
    let sparse = (0..<n).map { Int32($0 * 3 + 1) } // ranks left after failures
    let layouts: [(String, [Int])] = [
        ("one node per member", Array(0..<n)),
        ("all on one node", [Int](repeating: 0, count: n)),
        ("two per node", (0..<n).map { $0 / 2 }),
        ("round-robin over 3 nodes", (0..<n).map { $0 % 3 }),
        ("random node ids", (0..<n).map { _ in Int.random(in: 100..<(100 + max(1, n / 2)), using: &rng) }),
    ]
    var views: [(String, View)] = []
    for (name, nodes) in layouts {
        views.append(("n=\(n) \(name)", View(epoch: 1, members: contiguous, nodeOfMember: nodes)!))
        views.append(("n=\(n) \(name), sparse ranks", View(epoch: 2, members: sparse, nodeOfMember: nodes)!))
    }
    return views
}

private func sampleHashes(_ count: Int, seed: UInt64) -> [UInt64] {
    var rng = SplitMix64(seed: seed)
    return [0, 1, UInt64.max, UInt64.max - 1] + (0..<count).map { _ in rng.next() }
}

@Suite("Placement")
struct PlacementTests {
    @Test("replica sets: size, membership, primary first, distinct nodes", arguments: 1...16)
    func replicaSetInvariants(n: Int) {
        let hashes = sampleHashes(1000, seed: UInt64(n))
        for (name, view) in sampleViews(n: n) {
            let members = Set(view.members)
            var nodeOf: [Int32: Int] = [:]
            for (m, node) in zip(view.members, view.nodeOfMember) { nodeOf[m] = node }
            let nodeCount = Set(view.nodeOfMember).count
            #expect(view.nodeCount == nodeCount)
            let primaries = Placement(view: view, replicas: 1)
            for r in 1...4 {
                let p = Placement(view: view, replicas: r)
                let size = min(r, n)
                #expect(p.replicas == size, "\(name) r=\(r)")
                var failures: [String] = []
                for h in hashes {
                    let set = p.replicaRanks(ofHash: h)
                    let nodes = Set(set.compactMap { nodeOf[$0] })
                    if set.count != size { failures.append("size \(set.count)") }
                    if Set(set).count != set.count { failures.append("duplicate ranks \(set)") }
                    if !set.allSatisfy(members.contains) { failures.append("non-member in \(set)") }
                    // The primary does not depend on r: it is the key's owner on the ring.
                    if set.first != primaries.replicaRanks(ofHash: h).first { failures.append("primary of \(set)") }
                    // Distinct nodes while r <= nodes; all nodes otherwise.
                    if nodes.count != min(size, nodeCount) {
                        failures.append("\(set) covers \(nodes.count) nodes of \(nodeCount)")
                    }
                    let viaClosure = p.withReplicas(ofHash: h) { Array($0) }
                    if viaClosure != set { failures.append("withReplicas disagrees") }
                    if failures.count > 5 { break }
                }
                #expect(failures.isEmpty, "\(name) r=\(r): \(failures.prefix(5))")
            }
        }
    }

    @Test("replicas are clamped to 1...members")
    func clamping() {
        let view = View(epoch: 0, members: [0, 1, 2], nodeOfMember: [0, 1, 2])!
        #expect(Placement(view: view, replicas: 0).replicas == 1)
        #expect(Placement(view: view, replicas: -4).replicas == 1)
        #expect(Placement(view: view, replicas: 64).replicas == 3)
        #expect(Set(Placement(view: view, replicas: 64).replicaRanks(ofHash: 12345)) == [0, 1, 2])
    }

    @Test("the same view and r give the same sets (10k keys)")
    func determinism() {
        let view = View(epoch: 3, members: [0, 1, 2, 4, 5, 6, 7, 9, 10, 11], nodeOfMember: [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])!
        for r in [1, 2, 3] {
            let a = Placement(view: view, replicas: r)
            let b = Placement(view: View(epoch: 3, members: view.members, nodeOfMember: view.nodeOfMember)!, replicas: r)
            var differ = 0
            for i in 0..<10_000 {
                let h = StableHash.hash("det-\(i)")
                if a.replicaRanks(ofHash: h) != b.replicaRanks(ofHash: h) { differ += 1 }
            }
            #expect(differ == 0, "r=\(r)")
        }
    }

    @Test("pinned placement of a few keys (format regression check)")
    func pinnedPlacement() {
        // Every rank must compute the same sets, across versions too: changing these is a FORMAT
        // CHANGE (ranks on different versions would disagree on which rank holds a key).
        // Computed once and cross-checked against an independent reimplementation of the ring.
        let view = View(epoch: 0, members: [0, 1, 2, 3], nodeOfMember: [0, 0, 1, 1])!
        let p = Placement(view: view, replicas: 2)
        let pinned: [(String, [Int32])] = [
            ("a", [2, 1]), ("b", [0, 3]), ("checkpoint/step-100", [2, 1]), ("x", [2, 0]), ("y", [1, 2]), ("z", [3, 1]),
        ]
        for (key, ranks) in pinned {
            #expect(p.replicaRanks(ofHash: StableHash.hash(key)) == ranks, "\(key)")
        }
    }

    @Test("balance: n=8, r=1, 100k keys, each primary share within ±35% of 1/8")
    func balance() {
        let view = View(epoch: 0, members: (0..<8).map { Int32($0) }, nodeOfMember: (0..<8).map { $0 / 2 })!
        let p = Placement(view: view, replicas: 1)
        var counts = [Int](repeating: 0, count: 8)
        let n = 100_000
        for i in 0..<n {
            counts[Int(p.replicaRanks(ofHash: StableHash.hash("ckpt/var-\(i)"))[0])] += 1
        }
        let mean = Double(n) / 8
        for (rank, c) in counts.enumerated() {
            #expect(abs(Double(c) - mean) <= 0.35 * mean, "rank \(rank) owns \(c) of \(n): \(counts)")
        }
        #expect(counts.reduce(0, +) == n)
    }

    @Test("removing one member only moves keys that member held", arguments: [Int32(0), 3, 7])
    func stability(removed: Int32) {
        let members: [Int32] = Array(0..<8)
        let nodes = [0, 0, 1, 1, 2, 2, 3, 3]
        let before = View(epoch: 0, members: members, nodeOfMember: nodes)!
        let keep = members.indices.filter { members[$0] != removed }
        let after = View(epoch: 1, members: keep.map { members[$0] }, nodeOfMember: keep.map { nodes[$0] })!
        for r in [1, 2, 3] {
            let p0 = Placement(view: before, replicas: r)
            let p1 = Placement(view: after, replicas: r)
            var keptPrimary = 0, stolenPrimary = 0, changedSetsWithout = 0, lostRemoved = 0
            let n = 20_000
            for i in 0..<n {
                let h = StableHash.hash("stable-\(i)")
                let s0 = p0.replicaRanks(ofHash: h)
                let s1 = p1.replicaRanks(ofHash: h)
                if s1.contains(removed) { lostRemoved += 1 }
                if s0[0] == s1[0] { keptPrimary += 1 }
                if s0[0] != removed && s0[0] != s1[0] { stolenPrimary += 1 }
                // Still 4 nodes >= r: a set that did not hold the removed member is unchanged.
                if !s0.contains(removed) && s0 != s1 { changedSetsWithout += 1 }
            }
            #expect(lostRemoved == 0, "r=\(r): removed rank still placed")
            #expect(stolenPrimary == 0, "r=\(r): \(stolenPrimary) keys changed primary though it was not removed")
            #expect(Double(keptPrimary) >= 0.8 * Double(n), "r=\(r): only \(keptPrimary) of \(n) kept their primary")
            #expect(changedSetsWithout == 0, "r=\(r): \(changedSetsWithout) sets without the removed rank moved")
        }
    }

    @Test("View.initial numbers nodes by first appearance")
    func initialView() {
        let v = View.initial(nodeIdentities: [42, 7, 42, 9, 7, 1000, 9])
        #expect(v.epoch == 0)
        #expect(v.members == [0, 1, 2, 3, 4, 5, 6])
        #expect(v.nodeOfMember == [0, 1, 0, 2, 1, 3, 2])
        #expect(v.nodeCount == 4)
        let single = View.initial(nodeIdentities: [5])
        #expect(single.members == [0] && single.nodeOfMember == [0] && single.nodeCount == 1)
        let same = View.initial(nodeIdentities: [UInt64.max, UInt64.max, UInt64.max])
        #expect(same.nodeOfMember == [0, 0, 0] && same.nodeCount == 1)
        #expect(View.initial(nodeIdentities: [3, 2, 1]).nodeOfMember == [0, 1, 2])
    }

    @Test("a view with a node count that does not match its members is refused, not a trap")
    func mismatchedView() {
        #expect(View(epoch: 1, members: [0, 1, 2], nodeOfMember: [0, 1]) == nil)
        #expect(View(epoch: 1, members: [], nodeOfMember: [0]) == nil)
        #expect(View(epoch: 1, members: [4], nodeOfMember: [0])?.members == [4])
    }
}

@Suite("Placement lookup")
struct PlacementLookupTests {
    /// The first point at or after `hash`, wrapping: the definition, by binary search.
    static func reference(_ points: [UInt64], _ hash: UInt64) -> Int {
        var lo = 0, hi = points.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if points[mid] < hash { lo = mid + 1 } else { hi = mid }
        }
        return lo == points.count ? 0 : lo
    }

    @Test("the bucket table finds the segment a binary search finds", arguments: [1, 2, 3, 4, 7, 64, 513])
    func bucketsMatchBinarySearch(n: Int) {
        for (name, view) in sampleViews(n: n).prefix(2) {
            let p = Placement(view: view, replicas: 2)
            var hashes = sampleHashes(200_000, seed: UInt64(n))
            for q in p.points { hashes += [q, q &- 1, q &+ 1] } // on, just before and after every point
            for h in hashes where p.segment(h) != Self.reference(p.points, h) {
                Issue.record("\(name): hash \(h) in segment \(p.segment(h)), expected \(Self.reference(p.points, h))")
                return
            }
        }
    }
}

@Suite("Placement shares")
struct PlacementShareTests {
    @Test func sharesCoverTheHashSpaceOnce() {
        let p = Placement(view: View.initial(nodeIdentities: [1, 2, 3, 4]), replicas: 2)
        let sets = p.replicaSetShares()
        #expect(abs(sets.values.reduce(0, +) - 1) < 1e-9)
        #expect(sets.keys.allSatisfy { $0.count == 2 && $0[0] != $0[1] })
        let primaries = p.primaryShares()
        #expect(primaries.count == 4 && primaries.values.allSatisfy { $0 > 0.1 && $0 < 0.4 })
        // The shares match where sample keys land.
        var counts = [Int32: Int]()
        var rng = SplitMix64(seed: 5)
        for _ in 0..<100_000 { counts[p.replicaRanks(ofHash: rng.next())[0], default: 0] += 1 }
        for (r, share) in primaries { #expect(abs(Double(counts[r] ?? 0) / 100_000 - share) < 0.01) }
    }
}
