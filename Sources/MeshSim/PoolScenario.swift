import MeshCore
import MeshPool

/// The `meshwork sim pool` scenario: N nodes join a mesh whose pool is a /16 (or larger
/// for more nodes), optionally with loss, a partition and churn; every running node
/// should end up with a distinct address and ownership should spread.
public struct PoolScenario: Sendable {
    public var nodes = 100
    public var loss = 0.0
    public var seed: UInt64 = 1
    public var partitionAt: Span?
    public var healAt: Span?
    /// Nodes replaced (one crashes, a new one joins) per second, for at least 20 s.
    public var churn = 0.0
    public var pool = AddressRange(IPv4Address(100, 64, 0, 1).value, IPv4Address(100, 64, 255, 254).value)
    public var joinRate = 200.0
    public var settle = Span.seconds(30)
    /// The mesh's reclaim time (the token's; 24 h by default).
    public var reclaim = Span.seconds(86400)
    /// After a heal, duplicates are counted apart for this long: a node renumbered by a
    /// reclaim still uses its old address until the reclaim reaches it.
    public static let convergence = Span.seconds(30)

    public init() {}

    public struct Report: Codable, Sendable {
        public var nodes: Int
        public var loss: Double
        public var seed: UInt64
        public var pool: String
        /// Seconds from a node's start to holding an address.
        public var timeToAddress: GossipScenario.Distribution
        /// Running nodes without an address at the end.
        public var withoutAddress: Int
        /// Addresses held by two running nodes of one connected component, at any check (every
        /// second; not counting the convergence window after a heal) and at the end.
        public var duplicatesSeen: Int
        /// The most seen at once in the 30 s after a heal, while reclaims reach the other side.
        public var duplicatesWhileConverging: Int
        public var duplicatesAtEnd: Int
        public var messagesPerAllocation: Double
        public var messagesByKind: [String: Int]
        /// Share of the pool owned by the largest owner, and how many nodes own space.
        public var largestOwnerShare: Double
        public var owners: Int
        public var simulatedSeconds: Double
        /// Reclaims made, and addresses lost to a conflict (then asked for again).
        public var reclaims: Int
        public var conflicts: Int
    }

    public func run(progress: ((String) -> Void)? = nil) -> Report {
        var settings = PoolAgent.Settings()
        settings.reclaimTime = reclaim
        // The lease time as `mesh create` sets it by default: the reclaim time.
        settings.leaseTime = reclaim
        let sim = PoolSimulation(seed: seed, pool: pool, loss: loss, settings: settings)
        var rng = SeededRandom(seed: seed ^ 0x9001)
        sim.addNode()
        let span = Span.seconds(Double(nodes - 1) / joinRate)
        for k in 1..<nodes {
            sim.schedule(at: .zero + .milliseconds(100) + span * (Double(k) / Double(nodes))) { sim.addNode() }
        }
        if let p = partitionAt {
            sim.schedule(at: .zero + p) {
                var a: [Int] = [], b: [Int] = []
                for i in sim.nodes.indices { if rng.next() % 2 == 0 { a.append(i) } else { b.append(i) } }
                sim.partition([a, b])
                progress?("partitioned at \(p)")
            }
        }
        if let h = healAt {
            sim.schedule(at: .zero + h) {
                sim.heal()
                progress?("healed at \(h)")
            }
        }
        // With churn, nodes are replaced for at least 20 s (or the join phase, if longer).
        let churnEnd = Instant.zero + Span.milliseconds(100) + (churn > 0 ? Swift.max(span, .seconds(20)) : span)
        let end = Swift.max(churnEnd, .zero + (healAt ?? .zero)) + settle
        if churn > 0 {
            var t = Instant.zero + .seconds(1)
            while t < churnEnd {
                sim.schedule(at: t) {
                    let up = sim.upNodes.filter { $0 != 0 }
                    if !up.isEmpty { sim.crash(up[Int(rng.next() % UInt64(up.count))]) }
                    sim.addNode()
                }
                t = t + .seconds(1 / churn)
            }
        }
        var duplicatesSeen = 0, duplicatesWhileConverging = 0
        while sim.now < end {
            sim.run(for: .seconds(1))
            let now = sim.duplicateAddresses().values.reduce(0) { $0 + $1.count - 1 }
            if let h = healAt, sim.now > .zero + h, sim.now <= .zero + h + Self.convergence {
                duplicatesWhileConverging = max(duplicatesWhileConverging, now)
            } else {
                duplicatesSeen = max(duplicatesSeen, now)
            }
            if Int(sim.now.nanoseconds / 1_000_000_000) % 10 == 0 {
                progress?("simulated \(Int(sim.now.nanoseconds / 1_000_000_000))s: \(sim.upNodes.filter { sim.address(of: $0) != nil }.count) of \(sim.upNodes.count) running nodes bound")
            }
        }
        let up = sim.upNodes
        let times = sim.nodes.compactMap { n -> Double? in n.leasedAt.map { ($0 - n.startedAt).seconds } }
        let unfinished = up.filter { sim.address(of: $0) == nil }.count
        let bound = sim.nodes.filter { $0.leasedAt != nil }.count
        let (share, owners) = sim.ownershipSpread()
        return Report(
            nodes: sim.nodes.count, loss: loss, seed: seed, pool: "\(IPv4Address(pool.first))-\(IPv4Address(pool.last))",
            timeToAddress: GossipScenario.Distribution(times, unfinished: unfinished), withoutAddress: unfinished,
            duplicatesSeen: duplicatesSeen, duplicatesWhileConverging: duplicatesWhileConverging, duplicatesAtEnd: sim.duplicateAddresses().values.reduce(0) { $0 + $1.count - 1 },
            messagesPerAllocation: bound == 0 ? 0 : Double(sim.messages) / Double(bound), messagesByKind: sim.messagesByKind,
            largestOwnerShare: share, owners: owners, simulatedSeconds: (sim.now - .zero).seconds,
            reclaims: up.reduce(0) { $0 + sim.nodes[$1].agent!.counters.reclaims },
            conflicts: up.reduce(0) { $0 + sim.nodes[$1].agent!.counters.conflicts })
    }
}
