import MeshCore

/// What this node knows about one other member.
public struct Member: Sendable {
    public internal(set) var record: MemberRecord
    public internal(set) var status: MemberStatus
    /// The incarnation the status refers to (≥ the record's for suspect and dead).
    public internal(set) var statusIncarnation: UInt64
    public internal(set) var statusSince: Instant
    /// When a packet from this member last arrived here directly.
    public internal(set) var lastHeard: Instant?
    /// The source address of that packet: the address to answer (NAT-friendly).
    public internal(set) var observedEndpoint: Endpoint?
    var suspicion: Suspicion?

    public var node: NodeID { record.node }

    /// Where to send to this member: where it was last heard from, else what it advertises.
    public var bestEndpoint: Endpoint? { observedEndpoint ?? record.endpoints.first }

    var digest: DigestEntry {
        DigestEntry(key: record.node.digestKey, incarnation: statusIncarnation, status: status)
    }
}

/// Something that happened to the membership, for logs, metrics and the layers above.
public enum MembershipEvent: Sendable, Equatable {
    case joined(NodeID)
    case updated(NodeID)
    case suspected(NodeID)
    case recovered(NodeID)
    case died(NodeID)
    case left(NodeID)
    case forgotten(NodeID)
    /// This node refuted a suspicion or death claim about itself.
    case refuted(incarnation: UInt64)
}

/// What the state machine asks its shell to do.
public enum GossipOutput: Sendable {
    case send(GossipPacket, to: Endpoint)
    case event(MembershipEvent)
}

/// Counters for status output and metrics; drops are by reason.
public struct GossipCounters: Sendable, Equatable, Codable {
    public var messagesIn = 0
    public var messagesOut = 0
    public var probes = 0
    public var probesFailed = 0
    public var indirectProbes = 0
    public var updatesApplied = 0
    public var staleUpdates = 0
    public var badSignatures = 0
    public var bogusIncarnations = 0
    public var unknownAcks = 0
    public var misdirectedPings = 0
    public var refutations = 0
    public var syncs = 0
    public init() {}
}
