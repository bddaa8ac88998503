import MeshCore
import MeshPool
import MeshWire

/// A deterministic simulation of the address pool: `PoolAgent`s exchanging encoded
/// `PoolPacket`s over a lossy, partitionable virtual network.
///
/// Membership here is an oracle (each node is told which nodes run and are reachable);
/// the combined gossip + pool node comes with the daemon integration. Everything random
/// comes from the seed, so a run replays exactly.
public final class PoolSimulation {
    public struct SimNode {
        public let id: NodeID
        public internal(set) var agent: PoolAgent?
        public internal(set) var persistedSeq: UInt64 = 0
        public internal(set) var persisted: [Grant] = []
        var wakeAt: Instant = .distantFuture
        public internal(set) var startedAt: Instant = .zero
        public internal(set) var leasedAt: Instant?
        public var isUp: Bool { agent != nil }
    }

    public let seed: UInt64
    public var loss: Double
    public var latency = Span.milliseconds(5)
    public var jitter = Span.milliseconds(5)
    public let pool: AddressRange
    public private(set) var now = Instant.zero
    public private(set) var nodes: [SimNode] = []
    public private(set) var messages = 0
    public private(set) var duplicatesSeen = 0
    var rng: SeededRandom
    var queue = EventQueue<Event>()
    var group: [Int] = []
    var index: [NodeID: Int] = [:]
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
        self.loss = loss
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
        group.append(0)
        start(i)
        return i
    }

    public func crash(_ i: Int) {
        nodes[i].agent = nil
        nodes[i].wakeAt = .distantFuture
    }

    /// Restarts a crashed node from what it persisted (grants and sequence number).
    public func restart(_ i: Int) { start(i) }

    public func partition(_ groups: [[Int]]) {
        for i in group.indices { group[i] = 0 }
        for (g, m) in groups.enumerated() { for i in m { group[i] = g + 1 } }
        refreshMembers()
    }

    public func heal() {
        for i in group.indices { group[i] = 0 }
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

    public func run(for s: Span) { run(until: now + s) }

    @discardableResult
    public func run(until condition: () -> Bool, within limit: Span, step: Span = .milliseconds(100)) -> Bool {
        let end = now + limit
        while now < end {
            if condition() { return true }
            run(until: min(end, now + step))
        }
        return condition()
    }

    // MARK: - Views and invariants

    public var upNodes: [Int] { nodes.indices.filter { nodes[$0].isUp } }

    public func address(of i: Int) -> UInt32? { nodes[i].agent?.address }

    /// Addresses that more than one running node believes it holds.
    public func duplicateAddresses() -> [UInt32: [Int]] {
        var by: [UInt32: [Int]] = [:]
        for i in upNodes { if let a = address(of: i) { by[a, default: []].append(i) } }
        return by.filter { $0.value.count > 1 }
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

    /// Share of the pool owned (space and leases) by the largest owner, in node 0's view
    /// of everyone's grants merged.
    public func largestOwnerShare() -> Double {
        var merged: RingView?
        for i in upNodes {
            guard let v = nodes[i].agent?.view else { continue }
            if merged == nil { merged = v } else { merged!.merge(v) }
        }
        guard var m = merged else { return 0 }
        var by: [NodeID: UInt64] = [:]
        for o in m.ownership() { by[o.owner, default: 0] += o.range.count }
        return Double(by.values.max() ?? 0) / Double(pool.count)
    }

    // MARK: - Internals

    func start(_ i: Int) {
        var view = RingView(pool: pool, genesis: nodes.isEmpty ? nodes[i].id : nodes[0].id, auth: auth)
        for g in nodes[i].persisted { view.insert(g) }
        var agent = PoolAgent(me: nodes[i].id, view: view, auth: auth, seq: nodes[i].persistedSeq, settings: settings,
                              seed: rng.next(), now: now)
        nodes[i].startedAt = now
        nodes[i].leasedAt = nil
        var out = agent.createGenesis()
        nodes[i].agent = agent
        refreshMembers()
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

    func refreshMembers() {
        for i in upNodes {
            let reachable = upNodes.filter { $0 != i && group[$0] == group[i] }.map { nodes[$0].id }
            nodes[i].agent!.setMembers(reachable)
        }
    }

    func handle(_ i: Int, _ outputs: [PoolAgent.Output]) {
        for o in outputs {
            switch o {
            case .persist(let grants, let seq):
                nodes[i].persisted += grants
                nodes[i].persistedSeq = max(nodes[i].persistedSeq, seq)
            case .send(let packet, let to):
                messages += 1
                guard let j = index[to], group[i] == group[j] else { continue }
                if loss > 0, Double(rng.next() % 1_000_000) / 1e6 < loss { continue }
                let delay = latency + Span(nanoseconds: jitter.nanoseconds > 0 ? Int64(rng.next() % UInt64(jitter.nanoseconds)) : 0)
                queue.push(now + delay, .deliver(packet.wireBytes, to: j, from: i))
            case .event(let e):
                if case .leased = e, nodes[i].leasedAt == nil { nodes[i].leasedAt = now }
            }
        }
        guard let a = nodes[i].agent else { return }
        let d = max(a.nextDeadline, now)
        if d < nodes[i].wakeAt {
            nodes[i].wakeAt = d
            queue.push(d, .wake(i))
        }
    }
}
