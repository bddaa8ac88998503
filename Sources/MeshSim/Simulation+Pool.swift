import MeshCore
import MeshCrypto
import MeshNode
import MeshPool

/// What a simulated node made durable: the stand-in for its `pool.json`. Written from the
/// node's `.persist` outputs, as the daemon writes the file, and read back on restart.
public struct SimDisk: Sendable {
    public internal(set) var grants: [Bytes32: Grant] = [:]
    public internal(set) var seq: UInt64 = 0
    public internal(set) var votes: [Bytes32: NodeID] = [:]
    /// The checkpoint the node's view was last built on (grants inside its cut dropped).
    public internal(set) var base: PoolCheckpoint?

    public init() {}

    mutating func write(grants new: [Grant], seq s: UInt64, votes v: [Bytes32: NodeID], checkpoint: PoolCheckpoint? = nil) {
        for g in new { grants[g.ref] = g }
        seq = Swift.max(seq, s)
        votes.merge(v) { _, b in b }
        if let checkpoint {
            base = checkpoint
            grants = grants.filter { !checkpoint.holdsInside($0.value) }
        }
    }
}

/// One node's pool history in a run, kept by the simulator (not by the node).
public struct SimPoolLog: Sendable {
    /// The address the node is bound to now, as its events said.
    public internal(set) var bound: UInt32?
    /// When the node (in its current run) first held an address.
    public internal(set) var leasedAt: Instant?
    public internal(set) var startedAt: Instant = .zero
    /// When the node (in its current run) was asked to leave, and when it last stopped.
    public internal(set) var leftAt: Instant?
    public internal(set) var stoppedAt: Instant?
    /// The pool's counters when the node last stopped (how its release went, for one).
    public internal(set) var countersAtStop: PoolAgent.Counters?
    /// Leases this node lost to a conflict (`.lost` events).
    public internal(set) var lost = 0
    public internal(set) var reclaims = 0
    var asleep = false
}

/// How a node's state directory looks when it starts again.
public enum SimRestartDisk: Sendable {
    /// As it was when the node stopped.
    case kept
    /// Gone (moved aside, or a new disk): the node starts from nothing but its identity.
    case wiped
    /// An old backup, taken earlier with `disk(of:)`.
    case restored(SimDisk)
}

extension Simulation {
    /// The pool agent a node starts with, built from its disk as the daemon builds it.
    func makePoolAgent(_ i: Int, auth: any RecordAuthenticator) -> PoolAgent? {
        guard let pool else { return nil }
        let view = RingView.restored(pool: pool, genesis: nodes[0].id, admin: nil, auth: auth, base: nodes[i].disk.base,
                                     grants: Array(nodes[i].disk.grants.values))
        nodes[i].poolLog.startedAt = now
        nodes[i].poolLog.leftAt = nil
        nodes[i].poolLog.leasedAt = nil
        nodes[i].poolLog.bound = nil
        return PoolAgent(me: nodes[i].id, view: view, auth: auth, seq: nodes[i].disk.seq, settings: poolSettings,
                         votes: nodes[i].disk.votes, fresh: nodes[i].incarnation == 1, seed: rng.next(), now: now)
    }

    /// What node `i` has made durable (copy it to restore it later, as an old backup).
    public func disk(of i: Int) -> SimDisk { nodes[i].disk }

    /// Starts a crashed node again with its identity, and its disk as `disk` says.
    public func restart(_ i: Int, joinVia seeds: [Int], disk: SimRestartDisk) {
        switch disk {
        case .kept: break
        case .wiped: nodes[i].disk = SimDisk()
        case .restored(let d): nodes[i].disk = d
        }
        restart(i, joinVia: seeds)
    }

    /// Suspends a node (a laptop lid closed): it keeps its state, receives nothing, sends
    /// nothing and runs no timers until `wake`. Its clock, like CLOCK_BOOTTIME, counts the
    /// time asleep.
    public func suspend(_ i: Int) {
        nodes[i].poolLog.asleep = true
        nodes[i].wakeAt = .distantFuture
    }

    public func wake(_ i: Int) {
        guard nodes[i].isUp, nodes[i].poolLog.asleep else { return }
        nodes[i].poolLog.asleep = false
        let out = withNode(i) { $0.tick(now: now) }
        handle(i, out)
    }

    func recordPool(_ i: Int, _ e: PoolEvent) {
        switch e {
        case .leased(let a):
            // A suspended node uses nothing; on waking it lets a lapsed lease go first.
            if let j = nodes.indices.first(where: { $0 != i && nodes[$0].isUp && !nodes[$0].poolLog.asleep && nodes[$0].poolLog.bound == a }) {
                duplicateAddresses.append((now, a, j, i))
                duplicateDetails.append("t+\((now - Instant.zero).seconds)s: \(IPv4Address(a)) taken by n\(i) (\(leaseLine(of: i, seenBy: i))) "
                    + "while n\(j) held it (\(leaseLine(of: j, seenBy: j)); n\(i)'s view: \(leaseLine(of: j, seenBy: i)))")
            }
            nodes[i].poolLog.bound = a
            if nodes[i].poolLog.leasedAt == nil { nodes[i].poolLog.leasedAt = now }
        case .lost:
            if let a = nodes[i].poolLog.bound {
                lostDetails.append("t+\((now - Instant.zero).seconds)s: n\(i) lost \(IPv4Address(a)); now \(ownerLine(of: a, seenBy: i))")
            }
            nodes[i].poolLog.lost += 1
            nodes[i].poolLog.bound = nil
        case .released, .expired:
            nodes[i].poolLog.bound = nil
        case .reclaimed:
            nodes[i].poolLog.reclaims += 1
        default:
            break
        }
        poolObserver?(now, i, e)
    }

    /// Runs `body` on node `i`'s pool agent now and sends what it outputs: a script for a
    /// member that misbehaves (insider attacks), or for a test that needs one exact step.
    public func withPool(_ i: Int, _ body: (inout PoolAgent) -> [PoolAgent.Output]) {
        guard nodes[i].isUp else { return }
        let out = withNode(i) { $0.withPool(now: now, body) }
        handle(i, out)
    }

    /// Node `i`'s lease and the line of grants above it, as node `k` folds them (how a
    /// duplicate came about: `duplicateDetails`).
    func leaseLine(of i: Int, seenBy k: Int) -> String {
        guard var view = nodes[k].node?.pool?.view else { return "no view" }
        guard let lease = view.leases(of: nodes[i].id).first else { return "no lease in view" }
        return grantLine(lease.grant, in: view)
    }

    /// Who holds `address` as node `k` folds it, and the line of grants above (how a lease
    /// was lost: `lostDetails`).
    func ownerLine(of address: UInt32, seenBy k: Int) -> String {
        guard var view = nodes[k].node?.pool?.view else { return "no view" }
        guard let o = view.owner(of: address) else { return "nobody holds it" }
        let who = index(of: o.owner).map { "n\($0)\(nodes[$0].isUp ? "" : " (stopped)")" } ?? "?"
        return "\(who) holds it: " + grantLine(o.grant, in: view)
    }

    func grantLine(_ start: Bytes32, in view: RingView) -> String {
        var line: [String] = []
        var ref: Bytes32? = start
        while let r = ref, line.count < 12 {
            if let g = view.grants[r] { line.append(g.description); ref = g.isGenesis ? nil : g.parent
            } else if view.base?.holdings.contains(where: { $0.ref == r }) == true { line.append("checkpoint \(view.base!.number) holding"); break
            } else { line.append("missing"); break }
        }
        return line.joined(separator: " ⟵ ")
    }

    // MARK: - Views of the pool

    /// Node `i`'s pool agent (nil if it is down or the mesh has no pool).
    public func poolAgent(_ i: Int) -> PoolAgent? { nodes[i].node?.pool }

    /// The address node `i` holds, if it runs and holds one.
    public func address(of i: Int) -> UInt32? { nodes[i].isUp ? nodes[i].node?.pool?.address : nil }

    /// Whether every running node holds an address, and no two hold the same one.
    public func allBoundDistinct() -> Bool {
        var seen = Set<UInt32>()
        for i in upNodes {
            guard let a = address(of: i), seen.insert(a).inserted else { return false }
        }
        return true
    }

    /// Running nodes that hold the same address right now, as [address: nodes].
    public func duplicateHolders() -> [UInt32: [Int]] {
        var by: [UInt32: [Int]] = [:]
        for i in upNodes { if let a = address(of: i) { by[a, default: []].append(i) } }
        return by.filter { $0.value.count > 1 }
    }

    /// Leases lost to conflicts across all nodes.
    public var leasesLost: Int { nodes.reduce(0) { $0 + $1.poolLog.lost } }

    /// Share of the pool held (space and leases) by each owner, as node `i` folds it.
    public func shares(seenBy i: Int) -> [NodeID: Double] {
        guard var view = nodes[i].node?.pool?.view else { return [:] }
        var by: [NodeID: UInt64] = [:]
        for o in view.ownership() { by[o.owner, default: 0] += o.range.count }
        let total = Double(view.pool.count)
        return by.mapValues { Double($0) / total }
    }

    /// The shares of the pool held by nodes not running, as the first running node folds
    /// them (what only a reclaim brings back).
    public func stoppedShares() -> [NodeID: Double] {
        let up = upNodes
        guard let first = up.first else { return [:] }
        let live = Set(up.map { nodes[$0].id })
        return shares(seenBy: first).filter { !live.contains($0.key) }
    }

    /// The largest share of the pool that a running node holds, as node `i` folds it.
    public func largestLiveShare(seenBy i: Int) -> Double {
        let live = Set(upNodes.map { nodes[$0].id })
        return shares(seenBy: i).filter { live.contains($0.key) }.values.max() ?? 0
    }

    public func index(of id: NodeID) -> Int? { nodes.firstIndex { $0.id == id } }
}
