import MeshCore
import MeshCrypto
import MeshGossip
import MeshNode
import MeshPool

/// A deterministic discrete-event simulation of many `MeshNode`s on a virtual network.
///
/// Everything random (latency jitter, loss, node randomness, identities) comes from one
/// seed, and events at the same instant run in the order they were scheduled, so a run is
/// a pure function of its seed and its script: a failure is replayed by rerunning its seed.
///
/// The network: every node has an underlay endpoint in 198.18.0.0/15; a datagram arrives
/// after `latency` plus uniform jitter, unless lost (probability `loss`) or the two ends
/// are in different partition groups. Crashed nodes receive nothing and send nothing.
public final class Simulation: VirtualTimeSimulation {
    public typealias Network = SimNetwork

    public struct SimNode {
        public let name: String
        public let id: NodeID
        public let endpoint: Endpoint
        public internal(set) var node: MeshNode?
        public internal(set) var incarnation: UInt64 = 0
        var wakeAt: Instant = .distantFuture
        let identity: NodeIdentity?
        /// Kept beside `node` so that checking it never touches (or copies) the node.
        public internal(set) var isUp = false
        /// What the node made durable (its `pool.json`), when the mesh has a pool.
        public internal(set) var disk = SimDisk()
        /// Pool history as this node lived it (Simulation+Pool.swift).
        public internal(set) var poolLog = SimPoolLog()
    }

    enum Event {
        case deliver([UInt8], from: Endpoint, to: Int)
        case wake(Int)
        case action(() -> Void)
    }

    public let seed: UInt64
    public var network: Network
    public let settings: GossipSettings
    public let realCrypto: Bool
    public private(set) var now = Instant.zero
    public internal(set) var nodes: [SimNode] = []
    var rng: SeededRandom
    var queue = EventQueue<Event>()
    var byEndpoint: [Endpoint: Int] = [:]
    var group: [Int] = []
    var preload: [MemberRecord] = []
    let secret: MeshSecret
    public private(set) var eventsProcessed = 0
    public private(set) var datagramsSent = 0
    public private(set) var datagramsLost = 0
    public private(set) var bytesSent = 0
    /// How many nodes are running (kept, not counted, so observers can ask it per event).
    public private(set) var upCount = 0

    /// Called for every membership event, with the index of the node that saw it.
    public var observer: ((Instant, Int, MembershipEvent) -> Void)?
    /// Called for every pool event, with the index of the node that had it.
    public var poolObserver: ((Instant, Int, PoolEvent) -> Void)?
    /// Every time a node took an address that another running node held: (when, address,
    /// holder, taker). Empty in every correct run.
    public internal(set) var duplicateAddresses: [(Instant, UInt32, Int, Int)] = []
    /// Each of `duplicateAddresses` explained: both leases and the grants above them.
    public internal(set) var duplicateDetails: [String] = []
    /// Each acknowledged lease lost to a conflict: the address, and who holds it now by the
    /// loser's view (the grant line above).
    public internal(set) var lostDetails: [String] = []
    /// Whether to record who signed each grant and when (`grantTrace`, for
    /// `explainStopped`); off by default: it keeps every grant of the run.
    public var traceGrants = false
    public internal(set) var grantTrace: [Bytes32: GrantTrace] = [:]

    /// The address pool, if the simulated mesh has one (node 0 is then its genesis node).
    public let pool: AddressRange?
    public let poolSettings: PoolAgent.Settings

    public init(seed: UInt64, settings: GossipSettings = .lan, network: Network = Network(), realCrypto: Bool = false,
                pool: AddressRange? = nil, poolSettings: PoolAgent.Settings = .init()) {
        self.seed = seed
        self.pool = pool
        self.poolSettings = poolSettings
        self.settings = settings
        self.network = network
        self.realCrypto = realCrypto
        rng = SeededRandom(seed: seed)
        var r = SeededRandom(seed: seed ^ 0x5ec7e7)
        secret = MeshSecret.generate(using: &r)
    }

    // MARK: - Script

    /// Adds a node and starts it now, joining through the given nodes (none: it waits to be
    /// joined); during a partition, on side `side` (an index into the groups given to
    /// `partition`; none: a side of its own until the heal).
    @discardableResult
    public func addNode(name: String? = nil, joinVia seeds: [Int] = [], side: Int? = nil) -> Int {
        let index = nodes.count
        let ep = endpoint(index)
        let identity: NodeIdentity?
        let id: NodeID
        if realCrypto {
            let ident = NodeIdentity.generate(using: &rng)
            identity = ident
            id = ident.nodeID
        } else {
            identity = nil
            id = NodeID(bytes: rng.bytes(32))!
        }
        nodes.append(SimNode(name: name ?? "n\(index)", id: id, endpoint: ep, node: nil, identity: identity))
        byEndpoint[ep] = index
        group.append(side.map { $0 + 1 } ?? 0)
        start(index, joinVia: seeds)
        return index
    }

    /// Stops a node at once, as `kill -9` would: no goodbye (what it persisted stays).
    public func crash(_ i: Int) {
        if nodes[i].isUp {
            upCount -= 1
            nodes[i].poolLog.stoppedAt = now
            nodes[i].poolLog.countersAtStop = nodes[i].node?.pool?.counters
        }
        nodes[i].poolLog.bound = nil
        nodes[i].isUp = false
        nodes[i].node = nil
        nodes[i].wakeAt = .distantFuture
    }

    /// Starts a crashed node again with the same identity and a higher incarnation (the
    /// daemon persists its incarnation), joining through `seeds`.
    public func restart(_ i: Int, joinVia seeds: [Int]) {
        precondition(!nodes[i].isUp, "restart of a running node")
        start(i, joinVia: seeds)
    }

    /// A graceful leave: the node announces it and keeps running for `linger`, then stops.
    /// Releasing, the linger starts once its pool has given its space away
    /// (`PoolAgent.releasePending`), or after the pool's `releaseWaitMax`, as in the daemon.
    public func leave(_ i: Int, linger: Span = .seconds(1), release: Bool = false) {
        guard nodes[i].isUp else { return }
        nodes[i].poolLog.leftAt = now
        let out = withNode(i) { $0.leave(now: now, release: release) }
        handle(i, out)
        after({ [weak self] in release && self?.nodes[i].isUp == true && self?.nodes[i].node?.pool?.releasePending == true },
              giveUpAt: now + poolSettings.releaseWaitMax) { [weak self] in
            guard let self else { return }
            self.schedule(at: self.now + linger) { [weak self] in self?.crash(i) }
        }
    }

    /// Splits the network: nodes in different groups cannot reach each other.
    public func partition(_ groups: [[Int]]) {
        for i in group.indices { group[i] = 0 }
        for (g, members) in groups.enumerated() { for i in members { group[i] = g + 1 } }
    }

    public func heal() { for i in group.indices { group[i] = 0 } }

    public func schedule(at time: Instant, _ action: @escaping () -> Void) {
        queue.push(time, .action(action))
    }

    /// Runs events until `time` (inclusive), then sets the clock to `time`.
    public func run(until time: Instant) {
        while let t = queue.nextTime, t <= time {
            let (at, event) = queue.pop()!
            now = at
            eventsProcessed += 1
            switch event {
            case .action(let f): f()
            case .wake(let i):
                guard nodes[i].wakeAt == at, nodes[i].isUp, !nodes[i].poolLog.asleep else { continue }
                nodes[i].wakeAt = .distantFuture
                let out = withNode(i) { $0.tick(now: now) }
                handle(i, out)
            case .deliver(let bytes, let from, let to):
                guard nodes[to].isUp, !nodes[to].poolLog.asleep else { continue }
                let out = withNode(to) { $0.receive(datagram: bytes, from: from, now: now) }
                handle(to, out)
            }
        }
        now = Swift.max(now, time)
    }


    // MARK: - Views

    public func gossip(_ i: Int) -> Gossip? { nodes[i].node?.gossip }

    /// What node `i` believes about node `j` (nil if it does not know j, or i is down).
    public func status(of j: Int, seenBy i: Int) -> MemberStatus? {
        guard let g = nodes[i].node?.gossip else { return nil }
        if i == j { return .alive }
        return g.member(nodes[j].id)?.status
    }

    public var upNodes: [Int] { nodes.indices.filter { nodes[$0].isUp } }

    /// Whether every running node sees exactly the running nodes as alive, and every
    /// stopped node it knows as dead or left.
    public func converged() -> Bool {
        let up = upNodes
        for i in up {
            for j in nodes.indices where j != i {
                let s = status(of: j, seenBy: i)
                if nodes[j].isUp { if s != .alive { return false } }
                else if let s, s <= .suspect { return false }
            }
        }
        return true
    }

    /// Whether every running node knows every other running node as alive or suspect
    /// (transient suspicions allowed, as under packet loss) and none as dead.
    public func allKnown() -> Bool {
        let up = upNodes
        for i in up {
            for j in up where j != i {
                guard let s = status(of: j, seenBy: i), s <= .suspect else { return false }
            }
        }
        return true
    }

    // MARK: - Internals

    /// Mutates node `i` in place. The node is moved out of the array first: a copy left
    /// behind would make every mutation copy the node's whole member table.
    func withNode(_ i: Int, _ body: (inout MeshNode) -> [NodeOutput]) -> [NodeOutput] {
        var n = nodes[i].node.take()!
        let out = body(&n)
        nodes[i].node = n
        return out
    }

    /// Adds `count` nodes that start already knowing each other, as a mesh that has run
    /// for a while would (each node's table restored, as the daemon restores persisted
    /// peers). For benchmarks that measure a settled mesh rather than its boot.
    public func addSettledNodes(_ count: Int) {
        let first = nodes.count
        var records: [MemberRecord] = []
        for k in 0..<count {
            let index = first + k
            let ep = endpoint(index)
            let id = NodeID(bytes: rng.bytes(32))!
            nodes.append(SimNode(name: "n\(index)", id: id, endpoint: ep, node: nil, incarnation: 1, identity: nil))
            byEndpoint[ep] = index
            group.append(0)
            records.append(MemberRecord(node: id, incarnation: 1, name: "n\(index)", endpoints: [ep], x25519: .zero))
        }
        precondition(!realCrypto, "settled nodes are for stand-in crypto runs")
        preload = records
        for k in 0..<count {
            nodes[first + k].incarnation = 0
            start(first + k, joinVia: [])
        }
        preload = []
    }

    func endpoint(_ index: Int) -> Endpoint {
        Endpoint(IPv4Address(198, 18 + UInt8(index >> 16), UInt8((index >> 8) & 0xff), UInt8(index & 0xff)), port: 51830)
    }

    func start(_ i: Int, joinVia seeds: [Int]) {
        nodes[i].incarnation += 1
        let n = nodes[i]
        let record = MemberRecord(node: n.id, incarnation: n.incarnation, name: n.name, endpoints: [n.endpoint],
                                  x25519: Bytes32(rng.bytes(32))!)
        let auth: any RecordAuthenticator = n.identity.map { Ed25519RecordAuthenticator(identity: $0) } ?? NullAuthenticator()
        let sealer: any PacketSealer = realCrypto ? GossipSealer(secret: secret) : NullSealer()
        var gossip = Gossip(me: record, settings: settings, auth: auth, seed: rng.next(), now: now)
        if !preload.isEmpty { gossip.restore(preload, now: now) }
        var node = MeshNode(gossip: gossip, pool: makePoolAgent(i, auth: auth), sealer: sealer)
        let out = node.join(seeds: seeds.map { nodes[$0].endpoint }, now: now)
        nodes[i].node = node
        nodes[i].isUp = true
        upCount += 1
        handle(i, out)
    }

    func handle(_ i: Int, _ outputs: [NodeOutput]) {
        for o in outputs {
            switch o {
            case .datagram(let bytes, let to):
                datagramsSent += 1
                bytesSent += bytes.count
                guard let j = byEndpoint[to] else { continue }
                guard group[i] == group[j], let delay = network.transit(using: &rng) else {
                    datagramsLost += 1
                    continue
                }
                queue.push(now + delay, .deliver(bytes, from: nodes[i].endpoint, to: j))
            case .event(let e):
                observer?(now, i, e)
            case .persist(let grants, let seq, let votes, let checkpoint):
                nodes[i].disk.write(grants: grants, seq: seq, votes: votes, checkpoint: checkpoint)
                if traceGrants { trace(grants, signedBy: i) }
            case .pool(let e):
                recordPool(i, e)
            case .message, .messageAcknowledged, .messageFailed, .sessionEstablished, .packet, .pong:
                break
            }
        }
        // Read in place: copying the node out would retain its whole state on every event.
        guard nodes[i].isUp, let deadline = nodes[i].node?.nextDeadline else { return }
        let d = Swift.max(deadline, now)
        if d < nodes[i].wakeAt {
            nodes[i].wakeAt = d
            queue.push(d, .wake(i))
        }
    }
}
