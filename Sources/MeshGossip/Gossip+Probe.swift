import MeshCore
import MeshWire

/// Probing (SWIM's failure detector, with Lifeguard's awareness): one member a protocol
/// period, round-robin over a shuffled list (docs/gossip.md).
extension Gossip {
    mutating func startProbe(now: Instant, _ out: inout [GossipOutput]) {
        let scale = Double(awareness + 1)
        nextProbeAt = now + settings.probeInterval * scale
        guard let target = nextProbeTarget(), let ep = members[target]?.bestEndpoint else { return }
        let s = nextSeq()
        probe = PendingProbe(target: target, seq: s, indirectAt: now + settings.probeTimeout * scale,
                             deadline: now + settings.probeInterval * scale)
        counters.probes += 1
        send(.ping(seq: s, target: target, updates: piggyback(for: target)), to: ep, &out)
    }

    mutating func nextProbeTarget() -> NodeID? {
        for _ in 0..<(probeOrder.count + 1) {
            if probeCursor >= probeOrder.count {
                var order = memberIDs
                shuffle(&order)
                probeOrder = order
                probeCursor = 0
                if probeOrder.isEmpty { return nil }
            }
            let id = probeOrder[probeCursor]
            probeCursor += 1
            if let m = members[id], m.status <= .suspect { return id }
        }
        return nil
    }

    mutating func probeSucceeded(_ p: PendingProbe, now: Instant) {
        adjustAwareness(-1)
        if var m = members[p.target] {
            m.lastHeard = now
            members[p.target] = m
        }
    }

    mutating func probeFailed(_ p: PendingProbe, now: Instant, _ out: inout [GossipOutput]) {
        counters.probesFailed += 1
        // Lifeguard: missing nacks mean our own links are the problem as much as the target.
        adjustAwareness(p.expectedNacks > 0 ? Swift.max(0, p.expectedNacks - p.nacks) : 1)
        // A suspect that fails our probe too gets our confirmation (Lifeguard).
        guard let m = members[p.target], m.status <= .suspect else { return }
        apply(.suspect(target: p.target, incarnation: m.statusIncarnation, from: me.node), now: now, &out)
    }

    mutating func adjustAwareness(_ delta: Int) {
        awareness = Swift.max(0, Swift.min(settings.awarenessMaxMultiplier - 1, awareness + delta))
    }
}
