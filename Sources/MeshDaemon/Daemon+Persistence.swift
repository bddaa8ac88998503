import Dispatch
import Foundation
import Logging
import MeshCore
import MeshCrypto
import MeshGossip
import MeshNode
import MeshPool
import MeshTransport
import MeshTunnel
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What the node keeps on disk: pool state (snapshot and log), known peers, and the logs of
/// pool and membership events.
extension Daemon {
    // MARK: - Persistence

    /// Called on the runner's persist queue (off the event loop) before an ACK goes out:
    /// grants and seq must be on disk first; the runner holds the ACK until this returns.
    /// What is new is appended to `pool.log` (one write, one fsync); when the log outgrows
    /// the snapshot, `pool.json` is rewritten whole and the log cut back (PoolLog.swift).
    func persistPool(_ grants: [Grant], seq: UInt64, votes: [Bytes32: NodeID] = [:], checkpoint: PoolCheckpoint? = nil) throws {
        try poolState.withLockedValue { s in
            if let checkpoint, checkpoint.number > (s.base?.number ?? 0) {
                // The view moved onto a checkpoint: keep it, drop what lies inside its cut,
                // and write the state whole (the log's records are in it).
                s.base = checkpoint
                s.grants = s.grants.filter { !checkpoint.holdsInside($0.value) }
                return try writeSnapshot(s, cutting: poolLog)
            }
            let new = grants.filter { s.grants[$0.ref] == nil && !(s.base?.holdsInside($0) ?? false) }
            let newVotes = votes.filter { s.votes[$0.key] != $0.value }
            guard !new.isEmpty || seq > s.seq || !newVotes.isEmpty else { return }
            for g in new { s.grants[g.ref] = g }
            s.seq = max(s.seq, seq)
            s.votes.merge(newVotes) { _, new in new }
            guard let log = poolLog else { return try writeSnapshot(s, cutting: nil) }
            try log.append(PoolLogRecord(seq: s.seq, grants: new, votes: newVotes))
            // Compact once the log outgrows the snapshot (about 360 bytes a grant in either).
            if log.bytes > max(1 << 20, s.grants.count * 400) { try writeSnapshot(s, cutting: log) }
        }
    }

    /// Writes everything saved as a new `pool.json` (crash-safe), then cuts `log` (if any)
    /// back to its header: after a crash between the two, the log's records are read again
    /// on top of a snapshot that holds them, harmlessly.
    func writeSnapshot(_ s: PoolSaved, cutting log: PoolLog?) throws {
        try PoolStateFile(meshId: config.token.meshID.description, seq: s.seq, grants: Array(s.grants.values), votes: s.votes,
                          checkpoint: s.base).save(to: poolPath)
        try log?.reset()
    }

    /// On a clean stop: one `pool.json` holding everything, and an empty log.
    func compactPoolOnStop() {
        guard let log = poolLog else { return }
        do { try poolState.withLockedValue { s in try writeSnapshot(s, cutting: log) } } catch { logger.error("could not compact pool state: \(error)") }
    }

    /// Saves the grants the node's view holds that are not saved yet (so a restart keeps
    /// its lease and view).
    func saveView(blocking: Bool = false) {
        let log = logger
        snapshot(blocking: blocking, { node in (node.pool?.view.allGrants ?? [], node.pool?.seq ?? 0) }) { [self] pair in
            do { try persistPool(pair.0, seq: pair.1) } catch { log.error("could not save pool state: \(error)") }
        }
    }

    /// Reads from the node on its event loop, then writes what was read: later, or before
    /// returning with `blocking` (only ever off the event loop).
    func snapshot<T: Sendable>(blocking: Bool, _ read: @escaping @Sendable (MeshNode) -> T, write: @escaping @Sendable (T) -> Void) {
        let future = runner.inspect { node, _ in read(node) }
        if !blocking {
            future.whenSuccess(write)
        } else if let value = try? future.wait() {
            write(value)
        }
    }

    func log(_ event: PoolEvent) {
        poolDirty.withLockedValue { $0 = true }
        switch event {
        case .leased(let a): logger.notice("overlay address leased", metadata: ["address": "\(IPv4Address(a))"])
        case .lost(let a): logger.warning("overlay address lost to a conflicting grant; asking for another", metadata: ["address": "\(IPv4Address(a))"])
        case .declined(let a, let by):
            logger.warning("a node declined an address this node granted: it is held by another (conflict resolved against it)",
                           metadata: ["address": "\(IPv4Address(a))", "by": "\(by.fingerprint)"])
        case .exhausted: logger.warning("no member has free address space; retrying with backoff")
        case .released(let a): logger.notice("overlay address released", metadata: ["address": "\(IPv4Address(a))"])
        case .expired(let a):
            logger.warning("lease lapsed: cut off from members holding most of the pool for half the lease time; not using the address until they are reached",
                           metadata: ["address": "\(IPv4Address(a))"])
        case .reclaimed(let from, let range, let forced):
            logger.warning(forced ? "took over a node's space by hand (--force)" : "reclaimed the space of a node gone longer than the reclaim time",
                           metadata: ["from": "\(from.fingerprint)", "range": "\(range)"])
        case .fenced(true):
            logger.warning("fenced: the live members do not hold most of the pool; not granting addresses until they do")
        case .fenced(false):
            // Every node starts fenced (unreported) until it first reaches most of the pool.
            if hadQuorum {
                logger.notice("no longer fenced: in contact with members holding most of the pool")
            } else {
                logger.debug("in contact with members holding most of the pool: granting addresses")
            }
            hadQuorum = true
        }
    }

    /// Saves the incarnation and the peers now alive. `blocking` only off the event loop.
    func savePeers(blocking: Bool = false) {
        let meshId = config.token.meshID.description
        let inc = incarnation
        let path = statePath
        let log = logger
        snapshot(blocking: blocking, { node -> NodeStateFile in
            let peers = node.gossip.members.values
                .filter { $0.status <= .suspect }
                .sorted { $0.node < $1.node }
                .map { NodeStateFile.Peer(nodeId: $0.node.hex, name: $0.record.name, endpoints: $0.record.endpoints.map(\.description)) }
            return NodeStateFile(meshId: meshId, incarnation: Swift.max(inc, node.gossip.me.incarnation), peers: peers)
        }) { state in
            do { try state.save(to: path) } catch { log.error("could not save node state: \(error)") }
        }
    }

    func log(_ event: MembershipEvent, _ gossip: Gossip) {
        func who(_ id: NodeID) -> Logger.MetadataValue {
            "\(gossip.member(id)?.record.name ?? "?") (\(id.fingerprint))"
        }
        switch event {
        case .joined(let id): logger.info("member joined", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .updated(let id): logger.debug("member updated", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .suspected(let id): logger.info("member suspected", metadata: ["member": who(id)])
        case .recovered(let id): logger.info("member recovered", metadata: ["member": who(id)])
        case .died(let id): logger.warning("member dead", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .left(let id): logger.info("member left", metadata: ["member": who(id)]); dirty.withLockedValue { $0 = true }
        case .forgotten(let id): logger.debug("member forgotten", metadata: ["member": "\(id.fingerprint)"])
        case .refuted(let inc):
            logger.info("refuted a suspicion about this node", metadata: ["incarnation": "\(inc)"])
            dirty.withLockedValue { $0 = true }
        }
    }
}
