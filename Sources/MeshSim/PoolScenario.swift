import MeshCore
import MeshPool

/// The `meshwork sim pool` scenario, on whole nodes (`Simulation(pool:)`: gossip, pool and
/// the glue between them, as the daemon runs them): N nodes join a mesh whose pool is a /16
/// (or larger for more nodes), optionally with loss, a partition, churn and the death of a
/// fraction of them; every running node should end up with a distinct address, and no
/// address should ever be taken while another running node holds it.
public struct PoolScenario: Sendable {
    public var nodes = 100
    public var loss = 0.0
    public var seed: UInt64 = 1
    public var partitionAt: Span?
    public var healAt: Span?
    /// Nodes replaced (one crashes, a new one joins) per second, for at least 20 s.
    public var churn = 0.0
    /// A fraction of the running nodes killed at `killAt` (as `kill -9`), and as many new
    /// nodes joining in the second after.
    public var kill = 0.0
    public var killAt = Span.seconds(30)
    public var pool = AddressRange(IPv4Address(100, 64, 0, 1).value, IPv4Address(100, 64, 255, 254).value)
    public var joinRate = 200.0
    public var settle = Span.seconds(30)
    /// The mesh's reclaim time (the token's; 24 h by default); the lease time is the same.
    public var reclaim = Span.seconds(86400)
    /// Join/leave cycles after the join phase: a running node (not the first) leaves for
    /// good (RELEASE) and a new one joins, `cycleRate` times a simulated second.
    public var cycles = 0
    public var cycleRate = 2.0
    /// Grants held before the proposer starts a checkpoint (0: never; PoolAgent.Settings).
    public var checkpointEvery = PoolAgent.Settings().checkpointEvery
    /// Holdings that make a node merge them (0: never; PoolAgent.Settings).
    public var mergeAt = PoolAgent.Settings().mergeAt
    /// Print, at the end (through `progress`), why stopped nodes still hold space
    /// (`Simulation.explainStopped`); keeps every grant of the run to say who signed it when.
    public var explainStopped = false

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
        /// Times a node took an address that another running node held (`Simulation.duplicateAddresses`).
        public var duplicatesSeen: Int
        /// Addresses held by two running nodes at the end.
        public var duplicatesAtEnd: Int
        /// Acknowledged leases lost to a conflict (then asked for again).
        public var leasesLost: Int
        /// Leases a running node stopped using because it was fenced for half the lease
        /// time (`PoolEvent.expired`; taken back once it reaches a quorum).
        public var leasesLapsed: Int
        /// Datagrams sent by all nodes (gossip and pool: simulated nodes run no sessions) per
        /// node that got an address.
        public var datagramsPerAllocation: Double
        /// Share of the pool the largest running owner holds (by its own view), and how many
        /// nodes own part of it (by the view of the first running node).
        public var largestOwnerShare: Double
        public var owners: Int
        /// Share of the pool held by nodes not running (by the view of the first running
        /// node): space that comes back only by a reclaim, after the reclaim time. Once the
        /// stopped nodes hold half, the running ones hold no quorum and fence.
        public var stoppedShare: Double
        /// Nodes killed by `--kill`, and seconds from the kill until all their replacements
        /// held an address (nil if some never did).
        public var killed: Int
        public var replacementsBoundAfter: Double?
        public var reclaims: Int
        /// Join/leave cycles run (`cycles`), and what history left behind, sampled every
        /// simulated second over the running nodes: the most grants a view held, the largest
        /// state file (`pool.json` as the daemon writes it: checkpoint and grants, hex), the
        /// largest full anti-entropy exchange (checkpoint, every grant held, digest pages),
        /// the most holdings a checkpoint kept (how fragmented the pool is: a checkpoint
        /// keeps one per grant still holding part of it), and the newest checkpoint reached;
        /// checkpoints proposed and refused (summed over the nodes still running), and the
        /// most common reason a refusal gave.
        public var cycles: Int
        public var grantsHeldMax: Int
        public var holdingsMax: Int
        public var stateFileBytesMax: Int
        public var fullExchangeBytesMax: Int
        public var checkpoints: UInt64
        public var checkpointsProposed: Int
        public var checkpointsRefused: Int
        public var checkpointRefusal: String?
        /// Grants the nodes still running dropped as over their grantor's limit (summed).
        public var rateLimitedGrants: Int
        /// Nodes that left for good (RELEASE) and gave their space away with a current view,
        /// when the wait for one ran out (PoolAgent.Counters), or not at all before they
        /// stopped (never caught up: their space waits for the reclaim time).
        public var releasesCurrent: Int
        public var releasesOnTimeout: Int
        public var releasesNeverGave: Int
        /// With `explainStopped`: why stopped nodes still hold space at the end (nil without).
        public var stoppedExplained: [String]?
        /// With `explainStopped`: the grants the run signed, by kind (nil without).
        public var grantsSigned: GrantsSigned?
        public var simulatedSeconds: Double
    }

    public func run(progress: ((String) -> Void)? = nil) -> Report {
        var settings = PoolAgent.Settings()
        settings.reclaimTime = reclaim
        settings.leaseTime = reclaim
        settings.checkpointEvery = checkpointEvery
        settings.mergeAt = mergeAt
        let sim = Simulation(seed: seed, network: SimNetwork(loss: loss), pool: pool, poolSettings: settings)
        sim.traceGrants = explainStopped
        var rng = SeededRandom(seed: seed ^ 0x9001)
        // During a partition a new node joins one side (by a coin flip) through a node of it.
        var sides: [[Int]]?
        func joinOne() {
            var up = sim.upNodes
            var side: Int?
            if let s = sides {
                let k = Int(rng.next() % 2)
                side = k
                up = up.filter { s[k].contains($0) }
            }
            // Through up to three running nodes, as an operator lists several peers: with
            // nodes leaving twice a second, one seed alone may be gone before it answers.
            var seeds: [Int] = []
            while seeds.count < Swift.min(3, up.count) {
                let s = up[Int(rng.next() % UInt64(up.count))]
                if !seeds.contains(s) { seeds.append(s) }
            }
            let i = sim.addNode(joinVia: seeds, side: side)
            if let k = side { sides![k].append(i) }
        }
        sim.addNode()
        let span = Span.seconds(Double(nodes - 1) / joinRate)
        for k in 1..<nodes {
            sim.schedule(at: .zero + .milliseconds(100) + span * (Double(k) / Double(nodes))) { joinOne() }
        }
        if let p = partitionAt {
            sim.schedule(at: .zero + p) {
                var a: [Int] = [], b: [Int] = []
                for i in sim.nodes.indices { if rng.next() % 2 == 0 { a.append(i) } else { b.append(i) } }
                sides = [a, b]
                sim.partition([a, b])
                progress?("partitioned at \(p)")
            }
        }
        if let h = healAt {
            sim.schedule(at: .zero + h) {
                sides = nil
                sim.heal()
                progress?("healed at \(h)")
            }
        }
        var killed: [Int] = [], replacements: [Int] = []
        if kill > 0 {
            sim.schedule(at: .zero + killAt) {
                var up = sim.upNodes
                let count = Int((Double(up.count) * kill).rounded(.down))
                for _ in 0..<count {
                    let i = up.remove(at: Int(rng.next() % UInt64(up.count)))
                    sim.crash(i)
                    killed.append(i)
                }
                progress?("killed \(count) nodes at \(killAt)")
                for k in 0..<count {
                    sim.schedule(at: sim.now + .seconds(1) * (Double(k + 1) / Double(count))) {
                        joinOne()
                        replacements.append(sim.nodes.count - 1)
                    }
                }
            }
        }
        // With churn, nodes are replaced for at least 20 s (or the join phase, if longer).
        let churnEnd = Instant.zero + Span.milliseconds(100) + (churn > 0 ? Swift.max(span, .seconds(20)) : span)
        var end = Swift.max(churnEnd, .zero + (healAt ?? .zero)) + settle
        if kill > 0 { end = Swift.max(end, .zero + killAt + reclaim + settle) }
        if cycles > 0 {
            // After the join phase and 5 s to settle: one leaves for good, one joins.
            let first = churnEnd + .seconds(5)
            // Not one that is leaving already (it lingers a few seconds): picked again, it would
            // not leave twice, and the mesh would grow by one.
            var leaving = Set<Int>()
            for k in 0..<cycles {
                sim.schedule(at: first + .seconds(Double(k) / cycleRate)) {
                    let up = sim.upNodes.filter { $0 != 0 && !leaving.contains($0) }
                    if !up.isEmpty {
                        let i = up[Int(rng.next() % UInt64(up.count))]
                        leaving.insert(i)
                        sim.leave(i, release: true)
                    }
                    joinOne()
                }
            }
            end = Swift.max(end, first + .seconds(Double(cycles) / cycleRate) + settle)
        }
        var grantsHeldMax = 0, holdingsMax = 0, stateFileBytesMax = 0, fullExchangeBytesMax = 0
        if churn > 0 {
            var t = Instant.zero + .seconds(1)
            while t < churnEnd {
                sim.schedule(at: t) {
                    let up = sim.upNodes.filter { $0 != 0 }
                    if !up.isEmpty { sim.crash(up[Int(rng.next() % UInt64(up.count))]) }
                    joinOne()
                }
                t = t + .seconds(1 / churn)
            }
        }
        var replacementsBound: Instant?
        // A checkpoint's size on disk and on the wire, encoded once per ref and signer count.
        var sizes: [CheckpointSizeKey: Int] = [:]
        func size(_ cp: PoolCheckpoint?) -> Int {
            guard let cp else { return 0 }
            let key = CheckpointSizeKey(ref: cp.ref, signatures: cp.signatures.count)
            if let n = sizes[key] { return n }
            let n = cp.wireBytes.count
            sizes[key] = n
            return n
        }
        var explained = 0, lostExplained = 0
        var exchangeShown = 0  // the largest exchange printed so far
        while sim.now < end {
            sim.run(for: .seconds(1))
            for d in sim.duplicateDetails[explained...] { progress?("duplicate: \(d)") }
            explained = sim.duplicateDetails.count
            for d in sim.lostDetails[lostExplained...] { progress?("lease lost: \(d)") }
            lostExplained = sim.lostDetails.count
            if cycles > 0 {
                for i in sim.upNodes {
                    guard let agent = sim.poolAgent(i) else { continue }
                    let base = size(agent.view.base)
                    let held = agent.view.allGrants.reduce(0) { $0 + $1.encodedSize }
                    let disk = sim.disk(of: i)
                    let saved = size(disk.base) + disk.grants.values.reduce(0) { $0 + $1.encodedSize }
                    grantsHeldMax = Swift.max(grantsHeldMax, agent.view.grantCount)
                    holdingsMax = Swift.max(holdingsMax, agent.view.base?.holdings.count ?? 0)
                    // pool.json: hex (twice the bytes), a quoted string and comma per grant.
                    stateFileBytesMax = Swift.max(stateFileBytesMax, 2 * saved + 3 * disk.grants.count + 200)
                    let exchange = base + held + GrantorDigest.size * agent.view.byGrantor.count
                    if exchange > fullExchangeBytesMax {
                        // Who holds the largest exchange so far (printed when it grows by a
                        // tenth past 256 KiB), and whether it lags the newest checkpoint.
                        if exchange >= 256 << 10, exchange * 10 >= exchangeShown * 11 {
                            exchangeShown = exchange
                            let newest = sim.upNodes.compactMap { sim.poolAgent($0)?.checkpointNumber }.max() ?? 0
                            let n = sim.nodes[i]
                            progress?("largest exchange so far: \(exchange >> 10) KiB from n\(i) (up \(Int((sim.now - n.poolLog.startedAt).seconds)) s\(n.poolLog.leftAt == nil ? "" : ", leaving")), "
                                      + "on checkpoint \(agent.checkpointNumber) of \(newest), \(agent.view.grantCount) grants and \(agent.view.orphanCount) waiting")
                        }
                        fullExchangeBytesMax = exchange
                    }
                }
            }
            if replacementsBound == nil, !replacements.isEmpty, replacements.count == killed.count,
               replacements.allSatisfy({ sim.address(of: $0) != nil }) {
                replacementsBound = sim.now
            }
            if Int(sim.now.nanoseconds / 1_000_000_000) % 10 == 0 {
                let up = sim.upNodes
                // What nodes that are not running hold, as the first running node folds it:
                // space that comes back only by a reclaim (after --reclaim).
                let gone = sim.stoppedShares()
                let goneShare = gone.values.reduce(0, +) * 100
                var line = "simulated \(Int(sim.now.nanoseconds / 1_000_000_000))s: \(up.filter { sim.address(of: $0) != nil }.count) of \(up.count) running nodes bound; "
                    + "\(gone.count) stopped nodes hold \((goneShare * 10).rounded() / 10)% of the pool"
                if cycles > 0, let a = up.first.flatMap({ sim.poolAgent($0) }) {
                    // How cut up the pool is: entries of the fold (one per grant and stretch),
                    // and runs of one owner's free space however many grants hold them.
                    var view = a.view
                    let own = view.ownership().filter { $0.kind == .space }
                    var runs = own.isEmpty ? 0 : 1
                    for (x, y) in zip(own, own.dropFirst()) where x.owner != y.owner || UInt64(x.range.last) + 1 != UInt64(y.range.first) {
                        runs += 1
                    }
                    line += "; n\(up[0]) on checkpoint \(a.checkpointNumber), \(a.view.grantCount) grants, \(own.count) free stretches in \(runs) runs"
                }
                progress?(line)
            }
        }
        let up = sim.upNodes
        let times = sim.nodes.compactMap { n -> Double? in n.poolLog.leasedAt.map { ($0 - n.poolLog.startedAt).seconds } }
        let unfinished = up.filter { sim.address(of: $0) == nil }.count
        let bound = sim.nodes.filter { $0.poolLog.leasedAt != nil }.count
        let largest = up.map { sim.shares(seenBy: $0)[sim.nodes[$0].id] ?? 0 }.max() ?? 0
        let owners = up.first.map { sim.shares(seenBy: $0).count } ?? 0
        let agents = up.compactMap { sim.poolAgent($0) }
        let whyStopped = explainStopped ? sim.explainStopped() : nil
        for line in whyStopped ?? [] { progress?(line) }
        // Every node's last counters: those still running, and those stopped as they stopped.
        let counters = sim.nodes.indices.compactMap { sim.poolAgent($0)?.counters ?? sim.nodes[$0].poolLog.countersAtStop }
        return Report(
            nodes: sim.nodes.count, loss: loss, seed: seed, pool: "\(IPv4Address(pool.first))-\(IPv4Address(pool.last))",
            timeToAddress: GossipScenario.Distribution(times, unfinished: unfinished), withoutAddress: unfinished,
            duplicatesSeen: sim.duplicateAddresses.count,
            duplicatesAtEnd: sim.duplicateHolders().values.reduce(0) { $0 + $1.count - 1 },
            leasesLost: sim.leasesLost,
            leasesLapsed: sim.nodes.reduce(0) { $0 + ($1.node?.pool?.counters.leasesExpired ?? 0) },
            datagramsPerAllocation: bound == 0 ? 0 : Double(sim.datagramsSent) / Double(bound),
            largestOwnerShare: largest, owners: owners, stoppedShare: sim.stoppedShares().values.reduce(0, +), killed: killed.count,
            replacementsBoundAfter: replacementsBound.map { ($0 - (.zero + killAt)).seconds },
            reclaims: sim.nodes.reduce(0) { $0 + $1.poolLog.reclaims },
            cycles: cycles, grantsHeldMax: grantsHeldMax, holdingsMax: holdingsMax, stateFileBytesMax: stateFileBytesMax,
            fullExchangeBytesMax: fullExchangeBytesMax,
            checkpoints: up.compactMap { sim.poolAgent($0)?.checkpointNumber }.max() ?? 0,
            checkpointsProposed: agents.reduce(0) { $0 + $1.counters.checkpointsProposed },
            checkpointsRefused: agents.reduce(0) { $0 + $1.counters.checkpointsRefused },
            checkpointRefusal: Dictionary(grouping: agents.compactMap(\.lastCheckpointRefusal), by: { $0 }).max { $0.value.count < $1.value.count }?.key,
            rateLimitedGrants: agents.reduce(0) { $0 + $1.counters.rateLimitedGrants },
            releasesCurrent: counters.reduce(0) { $0 + $1.releasesCurrent },
            releasesOnTimeout: counters.reduce(0) { $0 + $1.releasesOnTimeout },
            releasesNeverGave: sim.nodes.filter { n in
                guard !n.isUp, n.poolLog.leftAt != nil, let c = n.poolLog.countersAtStop else { return false }
                return c.releasesCurrent + c.releasesOnTimeout == 0
            }.count,
            stoppedExplained: whyStopped,
            grantsSigned: explainStopped ? sim.grantsSigned() : nil,
            simulatedSeconds: (sim.now - .zero).seconds)
    }
}

/// A checkpoint's encoded size depends on its body (named by its ref) and its signers.
private struct CheckpointSizeKey: Hashable {
    let ref: Bytes32
    let signatures: Int
}
