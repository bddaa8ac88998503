import MeshCore
import MeshPool
import MeshWire

/// A deterministic simulation of the address pool: `PoolAgent`s exchanging encoded
/// `PoolPacket`s over a lossy, partitionable virtual network.
///
/// Membership here is an oracle (each node is told which nodes run and are reachable);
/// the combined gossip + pool node comes with the daemon integration. Everything random
/// comes from the seed, so a run replays exactly.
public final class PoolSimulation: VirtualTimeSimulation {
    public struct SimNode {
        public let id: NodeID
        public internal(set) var agent: PoolAgent?
        public internal(set) var persistedSeq: UInt64 = 0
        public internal(set) var persisted: [Grant] = []
        public internal(set) var persistedVotes: [Bytes32: NodeID] = [:]
        var wakeAt: Instant = .distantFuture
        public internal(set) var startedAt: Instant = .zero
        public internal(set) var leasedAt: Instant?
        /// How many times this node reported the pool exhausted.
        public internal(set) var exhaustedReports = 0
        public var isUp: Bool { agent != nil }
    }

    public let seed: UInt64
    public var network: SimNetwork
    public let pool: AddressRange
    public private(set) var now = Instant.zero
    public private(set) var nodes: [SimNode] = []
    public private(set) var messages = 0
    /// Messages sent, by kind (discover, offer, request, ack, nak, grants, digest).
    public private(set) var messagesByKind: [String: Int] = [:]
    public private(set) var duplicatesSeen = 0
    var rng: SeededRandom
    var queue = EventQueue<Event>()
    var group: [Int] = []
    var index: [NodeID: Int] = [:]
    var up = Set<Int>()
    var sides = 0
    let auth = NullAuthenticator()
    let settings: PoolAgent.Settings

    enum Event {
        case deliver([UInt8], to: Int, from: Int)
        case wake(Int)
        case action(() -> Void)
    }

    public init(seed: UInt64, pool: AddressRange, loss: Double = 0, settings: PoolAgent.Settings = .init()) {
        self.seed = seed
        self.pool = pool
        network = SimNetwork(loss: loss)
        self.settings = settings
        rng = SeededRandom(seed: seed)
    }

    public var genesis: NodeID { nodes[0].id }

    /// Adds a node and starts it now. Node 0 is the genesis node.
    @discardableResult
    public func addNode() -> Int {
        let i = nodes.count
        let id = NodeID(bytes: rng.bytes(32))!
        nodes.append(SimNode(id: id))
        index[id] = i
        // During a partition a newcomer lands on one side of it.
        group.append(sides > 0 ? 1 + Int(rng.next() % UInt64(sides)) : 0)
        start(i)
        return i
    }

    public func crash(_ i: Int) {
        guard nodes[i].agent != nil else { return }
        nodes[i].agent = nil
        nodes[i].wakeAt = .distantFuture
        up.remove(i)
        let id = nodes[i].id
        for j in up where group[j] == group[i] { nodes[j].agent!.removeMember(id) }
    }

    /// A node leaves for good: releases its address and space, and stops a second after its
    /// pool has given its space away (`PoolAgent.releasePending`; at most `releaseWaitMax`).
    public func release(_ i: Int) {
        guard let agent = nodes[i].agent else { return }
        let t = now
        handle(i, mutate(i) { $0.release(now: t) })
        after({ [weak self] in self?.nodes[i].agent?.releasePending == true }, giveUpAt: t + agent.settings.releaseWaitMax) { [weak self] in
            guard let self else { return }
            self.schedule(at: self.now + .seconds(1)) { [weak self] in self?.crash(i) }
        }
    }

    /// Restarts a crashed node from what it persisted (grants and sequence number).
    public func restart(_ i: Int) { start(i) }

    /// Reads from node `i`'s agent (which may update caches, not state others see).
    public func inspect<T>(_ i: Int, _ body: (inout PoolAgent, Instant) -> T) -> T {
        var a = nodes[i].agent.take()!
        defer { nodes[i].agent = a }
        return body(&a, now)
    }

    public func partition(_ groups: [[Int]]) {
        for i in group.indices { group[i] = 0 }
        for (g, m) in groups.enumerated() { for i in m { group[i] = g + 1 } }
        sides = groups.count
        refreshMembers()
    }

    public func heal() {
        for i in group.indices { group[i] = 0 }
        sides = 0
        refreshMembers()
    }

    public func schedule(at t: Instant, _ f: @escaping () -> Void) { queue.push(t, .action(f)) }

    public func run(until t: Instant) {
        while let next = queue.nextTime, next <= t {
            let (at, e) = queue.pop()!
            now = at
            switch e {
            case .action(let f): f()
            case .wake(let i):
                guard nodes[i].wakeAt == at, nodes[i].agent != nil else { continue }
                nodes[i].wakeAt = .distantFuture
                let t = now
                handle(i, mutate(i) { $0.tick(now: t) })
            case .deliver(let bytes, let to, _):
                guard nodes[to].agent != nil, let p = try? PoolPacket(wireBytes: bytes) else { continue }
                let t = now
                handle(to, mutate(to) { $0.receive(p, now: t) })
            }
        }
        now = max(now, t)
    }

    // MARK: - Views and invariants

    public var upNodes: [Int] { up.sorted() }

    public func address(of i: Int) -> UInt32? { nodes[i].agent?.address }

    /// Addresses that more than one running node of one connected component believes it
    /// holds. (Across a partition longer than the reclaim time, the majority side may hand
    /// out the addresses of the minority side's nodes; they renumber on heal.)
    public func duplicateAddresses() -> [UInt32: [Int]] {
        var by: [Int: [UInt32: [Int]]] = [:]
        for i in upNodes { if let a = address(of: i) { by[group[i], default: [:]][a, default: []].append(i) } }
        var out: [UInt32: [Int]] = [:]
        for (_, addrs) in by { for (a, holders) in addrs where holders.count > 1 { out[a, default: []] += holders } }
        return out
    }

    /// The component (partition side) node `i` is in; 0 when there is no partition.
    public func component(of i: Int) -> Int { group[i] }

    /// The merged view of every running node, folded.
    public func mergedView() -> RingView? {
        var merged: RingView?
        for i in upNodes {
            guard let v = nodes[i].agent?.view else { continue }
            if merged == nil { merged = v } else { merged!.merge(v) }
        }
        return merged
    }

    /// Every running node bound, to distinct addresses inside the pool.
    public func allBoundDistinct() -> Bool {
        let up = upNodes
        let addrs = up.compactMap { address(of: $0) }
        return addrs.count == up.count && Set(addrs).count == addrs.count && addrs.allSatisfy { pool.contains($0) }
    }

    /// The invariant checked after events: each running node's folded view is a partition
    /// of the pool (disjoint stretches that cover it).
    public func viewsArePartitions() -> Bool {
        for i in upNodes {
            guard var v = nodes[i].agent?.view, v.hasGenesis else { continue }
            let o = v.ownership()
            guard o.first?.range.first == pool.first, o.last?.range.last == pool.last else { return false }
            for (x, y) in zip(o, o.dropFirst()) where UInt64(x.range.last) + 1 != UInt64(y.range.first) { return false }
        }
        return true
    }

    public func largestOwnerShare() -> Double { ownershipSpread().largest }

    /// The largest owner's share of the pool (space and leases), and how many nodes own
    /// any, in the union of every running node's view.
    public func ownershipSpread() -> (largest: Double, owners: Int) {
        guard var m = mergedView() else { return (0, 0) }
        var by: [NodeID: UInt64] = [:]
        for o in m.ownership() { by[o.owner, default: 0] += o.range.count }
        return (Double(by.values.max() ?? 0) / Double(pool.count), by.count)
    }

    static func kind(_ m: PoolMessage) -> String {
        switch m {
        case .discover: return "discover"
        case .offer: return "offer"
        case .request: return "request"
        case .ack: return "ack"
        case .nak: return "nak"
        case .grants: return "grants"
        case .digest: return "digest"
        case .decline: return "decline"
        case .reclaimAsk: return "reclaimAsk"
        case .checkpointHave, .checkpointPart, .checkpointSign: return "checkpoint"
        case .reclaimVote: return "reclaimVote"
        }
    }

    // MARK: - Internals

    func start(_ i: Int) {
        var view = RingView(pool: pool, genesis: nodes.isEmpty ? nodes[i].id : nodes[0].id, auth: auth)
        for g in nodes[i].persisted { view.insert(g) }
        var agent = PoolAgent(me: nodes[i].id, view: view, auth: auth, seq: nodes[i].persistedSeq, settings: settings,
                              votes: nodes[i].persistedVotes, seed: rng.next(), now: now)
        nodes[i].startedAt = now
        nodes[i].leasedAt = nil
        var out = agent.createGenesis()
        agent.setMembers(up.filter { group[$0] == group[i] }.map { nodes[$0].id })
        nodes[i].agent = agent
        for j in up where group[j] == group[i] { nodes[j].agent!.addMember(nodes[i].id) }
        up.insert(i)
        let t = now
        out += mutate(i) { $0.acquire(now: t) }
        handle(i, out)
    }

    /// Mutates node `i`'s agent in place (moved out first, so no copy-on-write of its view).
    func mutate(_ i: Int, _ body: (inout PoolAgent) -> [PoolAgent.Output]) -> [PoolAgent.Output] {
        var a = nodes[i].agent.take()!
        let out = body(&a)
        nodes[i].agent = a
        return out
    }

    /// Tells every running node which nodes it can reach (after a partition or heal).
    func refreshMembers() {
        var byGroup: [Int: [NodeID]] = [:]
        for i in up { byGroup[group[i], default: []].append(nodes[i].id) }
        for i in up { nodes[i].agent!.setMembers(byGroup[group[i]] ?? []) }
        // As the real node does on a membership change: whoever has no address retries now.
        let t = now
        for i in up.sorted() where nodes[i].agent!.address == nil {
            handle(i, mutate(i) { $0.retryNow(now: t) })
        }
    }

    func handle(_ i: Int, _ outputs: [PoolAgent.Output]) {
        for o in outputs {
            switch o {
            case .persist(let grants, let seq):
                nodes[i].persisted += grants
                nodes[i].persistedSeq = max(nodes[i].persistedSeq, seq)
            case .persistVote(let holding, let successor):
                nodes[i].persistedVotes[holding] = successor
            case .persistCheckpoint:
                break  // the oracle simulator's nodes do not restart from disk
            case .send(let packet, let to), .resend(let packet, let to):
                messages += 1
                messagesByKind[Self.kind(packet.message), default: 0] += 1
                guard let j = index[to], group[i] == group[j], let delay = network.transit(using: &rng) else { continue }
                queue.push(now + delay, .deliver(packet.wireBytes, to: j, from: i))
            case .event(let e):
                if case .leased = e, nodes[i].leasedAt == nil { nodes[i].leasedAt = now }
                if case .exhausted = e { nodes[i].exhaustedReports += 1 }
            }
        }
        guard let deadline = nodes[i].agent?.nextDeadline else { return }
        let d = max(deadline, now)
        if d < nodes[i].wakeAt {
            nodes[i].wakeAt = d
            queue.push(d, .wake(i))
        }
    }
}
