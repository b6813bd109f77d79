/// Who is in the store now: an epoch-numbered list of live members (ranks of the store's
/// communicator) and the node each one runs on. Views only ever move to a higher epoch; messages
/// stamped with another epoch are not acted on, so a rank excluded from a view cannot change data.
public struct View: Sendable, Equatable {
    public let epoch: UInt32
    /// Live members, ascending ranks of the store's communicator.
    public let members: [Int32]
    /// Node index of each member (same order as `members`); equal indexes share a node.
    public let nodeOfMember: [Int]

    /// Nil unless there is one node per member (views will arrive from other ranks: no trap).
    public init?(epoch: UInt32, members: [Int32], nodeOfMember: [Int]) {
        guard members.count == nodeOfMember.count else { return nil }
        self.init(checked: epoch, members, nodeOfMember)
    }

    private init(checked epoch: UInt32, _ members: [Int32], _ nodeOfMember: [Int]) {
        self.epoch = epoch
        self.members = members
        self.nodeOfMember = nodeOfMember
    }

    /// The first view of a store: every rank of the communicator, nodes numbered by first
    /// appearance of each rank's node identity (so every rank derives the same numbering).
    public static func initial(nodeIdentities: [UInt64]) -> View {
        var index: [UInt64: Int] = [:]
        let nodes = nodeIdentities.map { id -> Int in
            if let known = index[id] { return known }
            let next = index.count
            index[id] = next
            return next
        }
        return View(checked: 0, (0..<Int32(nodeIdentities.count)).map { $0 }, nodes)
    }

    public var nodeCount: Int { Set(nodeOfMember).count }
}
