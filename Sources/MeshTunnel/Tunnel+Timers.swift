import MeshCore
import MeshCrypto

/// `Tunnel`'s timers: handshake retries, keepalives and key expiry.
extension Tunnel {
    // MARK: - Timers

    mutating func schedule(_ at: Instant) { nextDeadline = min(nextDeadline, at) }

    /// Retries and gives up handshakes, sends keepalives, starts a handshake when sent data
    /// got no answer, and forgets expired keys.
    public mutating func tick(now: Instant) -> [TunnelOutput] {
        guard now >= nextDeadline else { return [] }
        var out: [TunnelOutput] = []
        var next = Instant.distantFuture
        for node in peers.keys.sorted() {
            if let p = peers[node]!.pending, p.retryAt <= now, p.probe {
                // The direct path still does not answer: stay relayed, try again later.
                indices[p.localIndex] = nil
                peers[node]!.pending = nil
            } else if let p = peers[node]!.pending, p.retryAt <= now {
                if now - p.firstAttempt >= settings.rekeyAttemptTime {
                    indices[p.localIndex] = nil
                    peers[node]!.pending = nil
                    counters.handshakesFailed += 1
                    counters.drops.staged += peers[node]!.staged.count
                    peers[node]!.staged = []
                    out.append(.failed(node))
                } else {
                    out += startHandshake(node, now: now, retry: true)
                }
            }
            // Staged packets with no session and no handshake (a responder's unconfirmed
            // session that stayed so): start one.
            if !peers[node]!.staged.isEmpty, peers[node]!.pending == nil,
               !(peers[node]!.current.map { usable($0, now: now) } ?? false),
               peers[node]!.next.map({ now - $0.created >= settings.rekeyTimeout }) ?? true {
                out += startHandshake(node, now: now)
            }
            if let due = peers[node]!.keepaliveDue, due <= now {
                peers[node]!.keepaliveDue = nil
                if let kp = peers[node]!.current, usable(kp, now: now), let o = emit(seal([], kp), for: node) {
                    out.append(o)
                }
            }
            if let since = peers[node]!.unansweredSince, now - since >= settings.keepaliveTimeout + settings.rekeyTimeout {
                peers[node]!.unansweredSince = nil
                if peers[node]!.pending == nil { out += startHandshake(node, now: now) }
            }
            // While relayed, try the direct path every Keepalive-Timeout; traffic moves back
            // to it as soon as a direct answer arrives.
            if peers[node]!.via != nil, peers[node]!.pending == nil, peers[node]!.current.map({ usable($0, now: now) }) ?? false {
                if let at = peers[node]!.nextDirectProbe, at <= now {
                    peers[node]!.nextDirectProbe = now + settings.keepaliveTimeout
                    out += startHandshake(node, now: now, probe: true)
                } else if peers[node]!.nextDirectProbe == nil {
                    peers[node]!.nextDirectProbe = now + settings.keepaliveTimeout
                }
            } else if let at = peers[node]!.nextDirectProbe, at <= now {
                // Not probing now (no session, or a handshake under way): never a deadline in the past.
                peers[node]!.nextDirectProbe = now + settings.keepaliveTimeout
            }
            for kp in [peers[node]!.current, peers[node]!.previous, peers[node]!.next].compactMap({ $0 })
            where now - kp.created >= settings.rejectAfterTime * 3 {
                indices[kp.localIndex] = nil
                if peers[node]!.current === kp { peers[node]!.current = nil }
                if peers[node]!.previous === kp { peers[node]!.previous = nil }
                if peers[node]!.next === kp { peers[node]!.next = nil }
            }
            let p = peers[node]!
            if let r = p.pending?.retryAt { next = min(next, r) }
            if !p.staged.isEmpty, p.pending == nil, let n = p.next, n.created + settings.rekeyTimeout > now {
                next = min(next, n.created + settings.rekeyTimeout)
            }
            if let k = p.keepaliveDue { next = min(next, k) }
            if p.via != nil { next = min(next, p.nextDirectProbe ?? now + settings.keepaliveTimeout) }
            if let u = p.unansweredSince { next = min(next, u + settings.keepaliveTimeout + settings.rekeyTimeout) }
            for kp in [p.current, p.previous, p.next].compactMap({ $0 }) { next = min(next, kp.created + settings.rejectAfterTime * 3) }
        }
        nextDeadline = next
        return out
    }
}
