/// The version of one write, ordering all writes to a key the same way on every replica:
/// a later fence interval wins; within one interval the higher rank wins; within one rank's
/// interval its later write wins. Replicas that apply "only if newer" therefore converge whatever
/// order batches arrive in.
public struct Stamp: Comparable, Hashable, Sendable {
    public var fence: UInt64
    public var rank: UInt32
    public var seq: UInt64

    public init(fence: UInt64, rank: UInt32, seq: UInt64) {
        self.fence = fence
        self.rank = rank
        self.seq = seq
    }

    public static let zero = Stamp(fence: 0, rank: 0, seq: 0)

    public static func < (a: Stamp, b: Stamp) -> Bool {
        if a.fence != b.fence { return a.fence < b.fence }
        if a.rank != b.rank { return a.rank < b.rank }
        return a.seq < b.seq
    }
}
