import MeshCore
import MeshWire

/// Applying news: alive, suspect and dead updates by incarnation, and refuting a suspicion
/// about this node (docs/gossip.md).
extension Gossip {
    mutating func apply(_ update: Update, now: Instant, _ out: inout [GossipOutput]) {
        switch update {
        case .alive(let rec): applyAlive(rec, now: now, &out)
        case .suspect(let t, let inc, let from): applySuspect(t, inc, from: from, now: now, &out)
        case .dead(let t, let inc, let from): applyDead(t, inc, from: from, now: now, &out)
        }
    }

    mutating func applyAlive(_ rec: MemberRecord, now: Instant, _ out: inout [GossipOutput]) {
        if rec.node == me.node {
            // Our own record, from an earlier life or echoed back. Refute anything newer.
            guard rec.incarnation >= me.incarnation, rec != me else { return }
            guard rec.isValid(using: auth) else { counters.badSignatures += 1; return }
            refute(atLeast: rec.incarnation, &out)
            return
        }
        if let cur = members[rec.node] {
            guard rec.incarnation > cur.record.incarnation else { counters.staleUpdates += 1; return }
            guard rec.isValid(using: auth) else { counters.badSignatures += 1; return }
            var m = cur
            let was = m.status
            m.record = rec
            m.status = rec.left ? .left : .alive
            m.statusIncarnation = rec.incarnation
            if m.status != was { m.statusSince = now }
            m.suspicion = nil
            members[rec.node] = m
            suspects.remove(rec.node)
            if m.status == .left { down.insert(rec.node) } else { down.remove(rec.node) }
            counters.updatesApplied += 1
            broadcasts.enqueue(.alive(rec))
            switch (was, m.status) {
            case (_, .left) where was != .left: out.append(.event(.left(rec.node)))
            case (.suspect, .alive): out.append(.event(.recovered(rec.node)))
            case (.dead, .alive), (.left, .alive): out.append(.event(.joined(rec.node)))
            default: out.append(.event(.updated(rec.node)))
            }
        } else {
            // A member that left and was forgotten: only a newer record brings it back.
            if let left = tombstones[rec.node] {
                guard rec.incarnation > left.incarnation else { counters.staleUpdates += 1; return }
            }
            guard rec.isValid(using: auth) else { counters.badSignatures += 1; return }
            tombstones[rec.node] = nil
            let m = Member(record: rec, status: rec.left ? .left : .alive, statusIncarnation: rec.incarnation,
                           statusSince: now, lastHeard: nil, observedEndpoint: nil, suspicion: nil)
            insert(m)
            if rec.left { down.insert(rec.node) }
            counters.updatesApplied += 1
            broadcasts.enqueue(.alive(rec))
            out.append(.event(rec.left ? .left(rec.node) : .joined(rec.node)))
        }
    }

    mutating func applySuspect(_ target: NodeID, _ inc: UInt64, from: NodeID, now: Instant, _ out: inout [GossipOutput]) {
        guard var m = accused(target, inc, &out) else { return }
        if m.status == .suspect {
            // Lifeguard: an independent confirmation shortens the timeout, and is re-gossiped.
            guard inc == m.statusIncarnation, m.suspicion?.confirm(from: from) == true else { return }
            members[target] = m
            broadcasts.enqueue(.suspect(target: target, incarnation: inc, from: from))
            return
        }
        let n = memberCount
        let bounds = settings.suspicionTimeouts(members: n)
        let k = n - 2 < settings.suspicionMult - 2 ? 0 : settings.suspicionMult - 2
        m.status = .suspect
        m.statusIncarnation = inc
        m.statusSince = now
        m.suspicion = Suspicion(from: from, start: now, min: bounds.min, max: bounds.max, k: k)
        members[target] = m
        suspects.insert(target)
        counters.updatesApplied += 1
        broadcasts.enqueue(.suspect(target: target, incarnation: inc, from: from))
        out.append(.event(.suspected(target)))
    }

    mutating func applyDead(_ target: NodeID, _ inc: UInt64, from: NodeID, now: Instant, _ out: inout [GossipOutput]) {
        guard var m = accused(target, inc, &out) else { return }
        m.status = .dead
        m.statusIncarnation = inc
        m.statusSince = now
        m.suspicion = nil
        members[target] = m
        suspects.remove(target)
        down.insert(target)
        counters.updatesApplied += 1
        broadcasts.enqueue(.dead(target: target, incarnation: inc, from: from))
        out.append(.event(.died(target)))
    }

    /// The member a suspect or dead update of `target` at `inc` may change; nil for an
    /// accusation of this node (refuted), an unknown member, or a stale update (counted).
    mutating func accused(_ target: NodeID, _ inc: UInt64, _ out: inout [GossipOutput]) -> Member? {
        if target == me.node {
            accusedSelf(inc, &out)
            return nil
        }
        guard let m = members[target] else { return nil }
        guard inc >= m.statusIncarnation, m.status <= .suspect else { counters.staleUpdates += 1; return nil }
        return m
    }

    /// Someone suspects or buried this node.
    mutating func accusedSelf(_ inc: UInt64, _ out: inout [GossipOutput]) {
        guard !leaving, inc >= me.incarnation else { return }
        // No honest member can know an incarnation far above ours.
        guard inc - me.incarnation < 1 << 32 else { counters.bogusIncarnations += 1; return }
        refute(atLeast: inc, &out)
    }

    mutating func refute(atLeast inc: UInt64, _ out: inout [GossipOutput]) {
        guard inc < UInt64.max else { return }
        me.incarnation = inc + 1
        me.left = leaving
        me.sign(with: auth)
        adjustAwareness(1)
        counters.refutations += 1
        broadcasts.enqueue(.alive(me))
        out.append(.event(.refuted(incarnation: me.incarnation)))
    }
}
