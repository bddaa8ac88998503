import MeshCore
import MeshCrypto

/// The Noise IK handshake of `Tunnel` (initiating, answering, completing).
extension Tunnel {
    // MARK: - Handshake

    /// Wall-clock nanoseconds, strictly rising per initiation (responders refuse a timestamp
    /// not newer than the last one they accepted from this node: replayed initiations).
    mutating func timestamp(_ now: Instant) -> UInt64 {
        lastTimestamp = max(lastTimestamp &+ 1, epochNanos &+ UInt64(max(0, now.nanoseconds)))
        return lastTimestamp
    }

    mutating func newIndex() -> UInt32 {
        while true {
            let i = UInt32(truncatingIfNeeded: random.next())
            if i != 0, indices[i] == nil { return i }
        }
    }

    mutating func jitter() -> Span {
        let max = UInt64(Swift.max(1, settings.rekeyTimeoutJitterMax.nanoseconds))
        return Span(nanoseconds: Int64(random.next() % max))
    }

    func mac(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        mac1Key.withUnsafeBytes { Blake2b.hash(Array(bytes), outputLength: Self.macSize, keyBytes: $0) }
    }

    func macValid(_ d: [UInt8]) -> Bool {
        constantTimeEqual(mac(d[..<(d.count - Self.macSize)]), Array(d[(d.count - Self.macSize)...]))
    }

    mutating func startHandshake(_ node: NodeID, now: Instant, retry: Bool = false, probe: Bool = false) -> [TunnelOutput] {
        guard peers[node] != nil else { return [] }
        if retry {
            // The last try went unanswered: every third try goes direct, the others through
            // the members that could relay, in turn.
            peers[node]!.attempts += 1
            let n = peers[node]!.attempts
            let candidates = relayCandidates(for: node, now: now)
            peers[node]!.via = candidates.isEmpty || n % 3 == 0 ? nil : candidates[(n - 1) % candidates.count]
        }
        let peer = peers[node]!
        if let old = peer.pending { indices[old.localIndex] = nil }
        let ephemeral = X25519SecretKey.generate(using: &random)
        var hs = Noise.IKHandshake(role: .initiator, prologue: Self.prologue, psk: psk, staticKey: staticKey, ephemeral: ephemeral,
                                   remoteStatic: peer.info.staticKey.bytes)
        var ts: [UInt8] = []
        appendBE(&ts, timestamp(now))
        appendBE(&ts, boot)
        let index = newIndex()
        let first = retry ? peer.pending?.firstAttempt ?? now : now
        let retryAt = now + settings.rekeyTimeout + jitter()
        guard let body = try? hs.writeMessage(ts) else {
            // The peer's static key is a low-order point: no session is possible.
            peers[node]!.pending = nil
            counters.handshakesFailed += 1
            return [.failed(node)]
        }
        var msg = [Self.version, Self.typeInitiation]
        appendBE(&msg, index)
        msg += body
        msg += mac(msg[...])
        indices[index] = .pending(node)
        peers[node]!.pending = Pending(handshake: hs, localIndex: index, firstAttempt: first, retryAt: retryAt, sentAt: now, probe: probe)
        schedule(retryAt)
        counters.handshakesInitiated += 1
        if retry { counters.handshakeRetries += 1 }
        if probe {
            guard let endpoint = peer.endpoint else { return [] }
            return [.datagram(msg, to: endpoint)]
        }
        return emit(msg, for: node).map { [$0] } ?? []
    }

    mutating func receiveInitiation(_ d: [UInt8], from source: Route, now: Instant) -> [TunnelOutput] {
        guard d.count == Self.initiationSize else { counters.drops.malformed += 1; return [] }
        guard macValid(d) else { counters.drops.badMAC += 1; return [] }
        let senderIndex = readBE32(d, 2)
        var hs = Noise.IKHandshake(role: .responder, prologue: Self.prologue, psk: psk, staticKey: staticKey,
                                   ephemeral: X25519SecretKey.generate(using: &random))
        guard let payload = try? hs.readMessage(Array(d[6..<(d.count - Self.macSize)])) else { counters.drops.badMAC += 1; return [] }
        // A node never answers a key that is not a live member's.
        guard let rs = hs.remoteStatic.flatMap({ Bytes32($0) }), let node = byStatic[rs], peers[node] != nil else {
            counters.drops.notMember += 1
            return []
        }
        guard payload.count == 16 else { counters.drops.malformed += 1; return [] }
        let ts = readBE64(payload, 0)
        guard ts > peers[node]!.greatestTimestamp else { counters.drops.replay += 1; return [] }
        if let mine = peers[node]!.pending {
            // Both sides initiated at once: the initiation from the lower static key wins
            // (a direct probe never does: the peer's initiation is a real one).
            if !mine.probe, staticPublic < rs {
                counters.simultaneousWon += 1
                return []
            }
            indices[mine.localIndex] = nil
            peers[node]!.pending = nil
            counters.simultaneousYielded += 1
        }
        var bootBytes: [UInt8] = []
        appendBE(&bootBytes, boot)
        guard let body = try? hs.writeMessage(bootBytes), let keys = try? hs.split(),
              let sendKey = keys.send.keyBytes.flatMap({ try? SymmetricKey(bytes: $0) }),
              let receiveKey = keys.receive.keyBytes.flatMap({ try? SymmetricKey(bytes: $0) })
        else { counters.drops.badMAC += 1; return [] }
        peers[node]!.greatestTimestamp = ts
        var out: [TunnelOutput] = []
        if noteBoot(readBE64(payload, 8), of: node) { out.append(.restarted(node)) }
        let index = newIndex()
        var msg = [Self.version, Self.typeResponse]
        appendBE(&msg, index)
        appendBE(&msg, senderIndex)
        msg += body
        msg += mac(msg[...])
        let kp = Keypair(node: node, localIndex: index, remoteIndex: senderIndex, sendKey: sendKey, receiveKey: receiveKey,
                         created: now, isInitiator: false)
        if let old = peers[node]!.next { indices[old.localIndex] = nil }
        peers[node]!.next = kp
        indices[index] = .keypair(kp)
        arrived(node, by: source)
        counters.handshakesCompleted += 1
        schedule(now + settings.rejectAfterTime * 3)
        return out + (emit(msg, for: node).map { [$0] } ?? [])
    }

    mutating func receiveResponse(_ d: [UInt8], from source: Route, now: Instant) -> [TunnelOutput] {
        guard d.count == Self.responseSize else { counters.drops.malformed += 1; return [] }
        guard macValid(d) else { counters.drops.badMAC += 1; return [] }
        let senderIndex = readBE32(d, 2)
        let receiverIndex = readBE32(d, 6)
        guard case .pending(let node)? = indices[receiverIndex], var pending = peers[node]?.pending, pending.localIndex == receiverIndex else {
            counters.drops.unknownIndex += 1
            return []
        }
        guard let payload = try? pending.handshake.readMessage(Array(d[10..<(d.count - Self.macSize)])), payload.count == 8, let keys = try? pending.handshake.split(),
              let sendKey = keys.send.keyBytes.flatMap({ try? SymmetricKey(bytes: $0) }),
              let receiveKey = keys.receive.keyBytes.flatMap({ try? SymmetricKey(bytes: $0) })
        else { counters.drops.badMAC += 1; return [] }
        let kp = Keypair(node: node, localIndex: receiverIndex, remoteIndex: senderIndex, sendKey: sendKey, receiveKey: receiveKey,
                         created: now, isInitiator: true)
        indices[receiverIndex] = .keypair(kp)
        peers[node]!.pending = nil
        peers[node]!.verifying = false
        peers[node]!.attempts = 0
        peers[node]!.lastRTT = now - pending.sentAt
        install(kp, for: node)
        if let n = peers[node]!.next {
            indices[n.localIndex] = nil
            peers[node]!.next = nil
        }
        arrived(node, by: source)
        counters.handshakesCompleted += 1
        schedule(now + settings.rejectAfterTime * 3)
        var out: [TunnelOutput] = [.established(node)]
        if noteBoot(readBE64(payload, 0), of: node) { out.append(.restarted(node)) }
        // The responder may send only once it has heard on the new session: say something.
        if peers[node]!.staged.isEmpty {
            if let o = emit(seal([], kp), for: node) { out.append(o) }
            noteSent(node, data: false, now: now)
        } else {
            out += flush(node, now: now)
        }
        return out
    }

    /// Records the peer's boot ID; true if it changed (not the first one heard).
    mutating func noteBoot(_ b: UInt64, of node: NodeID) -> Bool {
        let old = peers[node]!.boot
        peers[node]!.boot = b
        return old != nil && old != b
    }

    /// The new session becomes current; the old one stays for receiving until it expires.
    mutating func install(_ kp: Keypair, for node: NodeID) {
        if let prev = peers[node]!.previous { indices[prev.localIndex] = nil }
        peers[node]!.previous = peers[node]!.current
        peers[node]!.current = kp
    }

    mutating func flush(_ node: NodeID, now: Instant) -> [TunnelOutput] {
        guard let kp = peers[node]?.current, peers[node]!.via != nil || peers[node]!.endpoint != nil else { return [] }
        let staged = peers[node]!.staged
        peers[node]!.staged = []
        var out: [TunnelOutput] = []
        for p in staged {
            if let o = emit(seal(p, kp), for: node) { out.append(o) }
            noteSent(node, data: !p.isEmpty, now: now)
        }
        return out
    }
}
