import MeshCore
import MeshCrypto
import MeshGossip
import MeshNode
import MeshWire
import Testing

/// Builds real, signed nodes with fixed keys and a fake clock.
struct Fixture {
    static func identity(_ seed: UInt64) -> NodeIdentity {
        var r = SeededRandom(seed: seed)
        return NodeIdentity.generate(using: &r)
    }

    static func endpoint(_ i: Int) -> Endpoint { Endpoint(IPv4Address(127, 0, 0, 1), port: UInt16(40000 + i)) }

    static func record(_ id: NodeIdentity, _ i: Int, incarnation: UInt64 = 1) -> MemberRecord {
        MemberRecord(node: id.nodeID, incarnation: incarnation, name: "n\(i)", endpoints: [endpoint(i)],
                     x25519: (try? id.publicKey.x25519().raw) ?? .zero)
    }

    static func gossip(_ i: Int, settings: GossipSettings = .lan, now: Instant = .zero) -> (Gossip, NodeIdentity) {
        let id = identity(UInt64(i) + 100)
        return (Gossip(me: record(id, i), settings: settings, auth: Ed25519RecordAuthenticator(identity: id), seed: UInt64(i), now: now), id)
    }

    static func signed(_ id: NodeIdentity, _ i: Int, incarnation: UInt64, left: Bool = false) -> MemberRecord {
        var r = record(id, i, incarnation: incarnation)
        r.left = left
        r.sign(with: Ed25519RecordAuthenticator(identity: id))
        return r
    }
}

extension Array where Element == GossipOutput {
    var sends: [(GossipPacket, Endpoint)] {
        compactMap { if case .send(let p, let e) = $0 { return (p, e) } else { return nil } }
    }
    var events: [MembershipEvent] {
        compactMap { if case .event(let e) = $0 { return e } else { return nil } }
    }
}

@Suite struct GossipDirectiveTests {
    /// A joiner's announcement to its seed is lost, its digest is not: the seed answers but
    /// does not know it. The joiner tries its seed again until the seed's digest holds it
    /// (seen at 300 simulated nodes and 5% loss: a node the mesh never learnt).
    @Test func aJoinerTriesItsSeedUntilTheSeedKnowsIt() {
        var (a, _) = Fixture.gossip(1)
        var (b, _) = Fixture.gossip(2)
        let seed = Fixture.endpoint(1), joiner = Fixture.endpoint(2)
        func announces(_ out: [GossipOutput]) -> Bool {
            out.sends.contains { p, to in
                guard to == seed, case .gossip(let updates) = p.message else { return false }
                return updates.contains { if case .alive(let r) = $0 { return r.node == b.me.node } else { return false } }
            }
        }
        let join = b.join(seeds: [seed], now: .zero)
        #expect(announces(join))
        // Only the digest arrives; the seed's answer reaches b; what b sends back is lost.
        var answer: [GossipOutput] = []
        for (p, _) in join.sends { if case .sync = p.message { answer += a.receive(p, from: joiner, now: .zero) } }
        for (p, _) in answer.sends { _ = b.receive(p, from: seed, now: .zero + .milliseconds(10)) }
        #expect(a.member(b.me.node) == nil)
        // b knows the seed now, but the seed does not know b: b announces itself again.
        var now = Instant.zero
        var again: [GossipOutput] = []
        while now < .zero + .seconds(3), !announces(again) { now = now + .milliseconds(100); again = b.tick(now: now) }
        #expect(announces(again), "b stopped trying its seed though the seed never learnt it")
        // Delivered this time: the seed learns b, its digest says so, and b stops.
        var toB: [GossipOutput] = []
        for (p, to) in again.sends where to == seed { toB += a.receive(p, from: joiner, now: now) }
        #expect(a.member(b.me.node) != nil)
        for (p, _) in toB.sends { _ = b.receive(p, from: seed, now: now) }
        var later: [GossipOutput] = []
        for k in 1...600 { later += b.tick(now: now + .milliseconds(100 * Int64(k))) }
        #expect(!announces(later), "b kept announcing itself to a seed that knows it")
    }

    @Test func pingIsAnsweredWithAckToTheSource() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2)
        let out = a.receive(GossipPacket(sender: b.nodeID, message: .ping(seq: 77, target: a.me.node, updates: [])),
                            from: Fixture.endpoint(2), now: .zero)
        #expect(out.sends.count == 1)
        guard case .ack(let seq, _)? = out.sends.first?.0.message else { Issue.record("expected ack"); return }
        #expect(seq == 77)
        #expect(out.sends.first?.1 == Fixture.endpoint(2))
    }

    @Test func pingForSomeoneElseIsIgnored() {
        var (a, _) = Fixture.gossip(1)
        let out = a.receive(GossipPacket(sender: Fixture.identity(2).nodeID, message: .ping(seq: 1, target: Fixture.identity(9).nodeID, updates: [])),
                            from: Fixture.endpoint(2), now: .zero)
        #expect(out.isEmpty)
        #expect(a.counters.misdirectedPings == 1)
    }

    @Test func joinerIsAddedFromItsSignedRecord() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2)
        let out = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 1))])),
                            from: Fixture.endpoint(2), now: .zero)
        #expect(out.events == [.joined(b.nodeID)])
        #expect(a.member(b.nodeID)?.status == .alive)
        #expect(a.member(b.nodeID)?.observedEndpoint == Fixture.endpoint(2))
    }

    @Test func forgedOrAlteredRecordsAreRejected() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2), mallory = Fixture.identity(3)
        // Mallory signs a record that claims to be B.
        var forged = Fixture.record(b, 2, incarnation: 5)
        forged.sign(with: Ed25519RecordAuthenticator(identity: mallory))
        _ = a.receive(GossipPacket(sender: mallory.nodeID, message: .gossip(updates: [.alive(forged)])), from: Fixture.endpoint(3), now: .zero)
        #expect(a.member(b.nodeID) == nil)
        // A genuine record with one field changed after signing.
        var altered = Fixture.signed(b, 2, incarnation: 1)
        altered.endpoints = [Fixture.endpoint(66)]
        _ = a.receive(GossipPacket(sender: mallory.nodeID, message: .gossip(updates: [.alive(altered)])), from: Fixture.endpoint(3), now: .zero)
        #expect(a.member(b.nodeID) == nil)
        #expect(a.counters.badSignatures == 2)
        // The genuine one is accepted; a forged newer incarnation does not replace it.
        _ = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 1))])), from: Fixture.endpoint(2), now: .zero)
        _ = a.receive(GossipPacket(sender: mallory.nodeID, message: .gossip(updates: [.alive(forged)])), from: Fixture.endpoint(3), now: .zero)
        #expect(a.member(b.nodeID)?.record.incarnation == 1)
        #expect(a.member(b.nodeID)?.record.endpoints == [Fixture.endpoint(2)])
        #expect(a.counters.badSignatures == 3)
    }

    /// A member that left for good is forgotten after `leftMemberRetention` (5 min), not the
    /// dead's 24 h: under churn departed members were most of every digest. Forgotten, it
    /// is still a tombstone for 24 h: a stale record of it (a laggard that missed the
    /// leave) brings nothing back, a newer one (it joined again) does.
    @Test func aMemberThatLeftIsForgottenButStaysBuried() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2)
        func hear(_ rec: MemberRecord, at s: Double) -> [GossipOutput] {
            a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(rec)])), from: Fixture.endpoint(2),
                      now: Instant.zero + .seconds(s))
        }
        func forgotten(_ out: [GossipOutput]) -> Bool { out.events.contains(.forgotten(b.nodeID)) }
        _ = hear(Fixture.signed(b, 2, incarnation: 1), at: 0)
        #expect(hear(Fixture.signed(b, 2, incarnation: 2, left: true), at: 1).events == [.left(b.nodeID)])
        let retention = GossipSettings.lan.leftMemberRetention
        #expect(retention == .seconds(300) && GossipSettings.lan.deadMemberRetention == .seconds(86400))
        // Forgotten in the first tick after its retention (counted from its leaving, at 1 s).
        var t = Instant.zero + .seconds(1)
        var at: Instant?
        while at == nil, t < Instant.zero + retention + .seconds(10) {
            t = t + .seconds(1)
            if forgotten(a.tick(now: t)) { at = t }
        }
        #expect(at.map { $0 - Instant.zero > retention + .seconds(1) && $0 - Instant.zero <= retention + .seconds(3) } == true,
                "forgotten at \(String(describing: at))")
        #expect(a.member(b.nodeID) == nil)
        // A stale alive record an hour later: refused, counted, not gossiped on.
        let stale = a.counters.staleUpdates
        #expect(hear(Fixture.signed(b, 2, incarnation: 1), at: 3600).events.isEmpty)
        #expect(a.member(b.nodeID) == nil && a.counters.staleUpdates == stale + 1)
        // A newer one: it joined again.
        #expect(hear(Fixture.signed(b, 2, incarnation: 3), at: 3601).events == [.joined(b.nodeID)])
        #expect(a.member(b.nodeID)?.status == .alive)
    }

    /// The tombstone of a member that left goes after `deadMemberRetention` (24 h): then
    /// even its oldest record is news again.
    @Test func aTombstoneGoesAfterADay() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2)
        let from = Fixture.endpoint(2)
        _ = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 2, left: true))])),
                      from: from, now: .zero)
        _ = a.tick(now: Instant.zero + .seconds(400))
        #expect(a.member(b.nodeID) == nil)
        _ = a.tick(now: Instant.zero + .seconds(86400))
        let back = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 1))])),
                             from: from, now: Instant.zero + .seconds(86400))
        #expect(back.events.isEmpty, "still buried at exactly 24 h")
        _ = a.tick(now: Instant.zero + .seconds(86402))
        let later = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 1))])),
                              from: from, now: Instant.zero + .seconds(86402))
        #expect(later.events == [.joined(b.nodeID)])
    }

    @Test func olderIncarnationsChangeNothing() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2)
        _ = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 5))])), from: Fixture.endpoint(2), now: .zero)
        let out = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.alive(Fixture.signed(b, 2, incarnation: 4)),
                                                                                      .suspect(target: b.nodeID, incarnation: 3, from: b.nodeID)])),
                            from: Fixture.endpoint(2), now: .zero)
        #expect(out.events.isEmpty)
        #expect(a.member(b.nodeID)?.status == .alive)
        #expect(a.counters.staleUpdates == 2)
    }

    @Test func suspicionOfSelfIsRefutedWithAHigherIncarnation() {
        var (a, _) = Fixture.gossip(1)
        let b = Fixture.identity(2)
        let out = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.suspect(target: a.me.node, incarnation: 1, from: b.nodeID)])),
                            from: Fixture.endpoint(2), now: .zero)
        #expect(out.events == [.refuted(incarnation: 2)])
        #expect(a.me.incarnation == 2)
        #expect(a.me.isValid(using: Ed25519RecordAuthenticator(identity: Fixture.identity(101))))
        #expect(a.awareness == 1)
        // An accusation far beyond any incarnation we ever had is bogus and ignored.
        _ = a.receive(GossipPacket(sender: b.nodeID, message: .gossip(updates: [.dead(target: a.me.node, incarnation: 1 << 40, from: b.nodeID)])),
                      from: Fixture.endpoint(2), now: .zero)
        #expect(a.me.incarnation == 2)
        #expect(a.counters.bogusIncarnations == 1)
    }

    @Test func silentTargetIsProbedIndirectlyThenSuspectedThenDeclaredDead() {
        var (a, _) = Fixture.gossip(1)
        var now = Instant.zero
        let peers = (2...6).map { Fixture.identity(UInt64($0) + 100) }
        for (k, p) in peers.enumerated() {
            _ = a.receive(GossipPacket(sender: p.nodeID, message: .gossip(updates: [.alive(Fixture.signed(p, k + 2, incarnation: 1))])),
                          from: Fixture.endpoint(k + 2), now: now)
        }
        // Drive time forward, acking every ping except those to the victim.
        let victim = peers[0].nodeID
        var pingReqs = 0, suspected: Instant?, died: Instant?
        while now < Instant.zero + .seconds(60), died == nil {
            now = Swift.max(now, a.nextDeadline)
            var outs = a.tick(now: now)
            while !outs.isEmpty {
                var next: [GossipOutput] = []
                for (packet, _) in outs.sends {
                    if case .ping(let seq, let target, _) = packet.message, target != victim {
                        next += a.receive(GossipPacket(sender: target, message: .ack(seq: seq, updates: [])), from: Fixture.endpoint(0), now: now)
                    }
                    if case .pingReq(_, let target, _, _) = packet.message, target == victim { pingReqs += 1 }
                }
                for e in outs.events {
                    if e == .suspected(victim), suspected == nil { suspected = now }
                    if e == .died(victim) { died = now }
                }
                outs = next
            }
        }
        #expect(pingReqs >= 3, "indirect probes were sent through others")
        #expect(suspected != nil)
        #expect(died != nil)
        if let s = suspected, let d = died {
            let bounds = GossipSettings.lan.suspicionTimeouts(members: 6)
            #expect(d - s >= bounds.min && d - s <= bounds.max + .seconds(1))
        }
        #expect(a.member(victim)?.status == .dead)
        // A dead member stays known for a day (reconnect tries it), unlike one that left.
        _ = a.tick(now: now + .seconds(3600))
        #expect(a.member(victim)?.status == .dead)
    }

    @Test func settingsFollowMemberlistLAN() {
        let s = GossipSettings.lan
        #expect(s.probeInterval == .seconds(1) && s.probeTimeout == .milliseconds(500))
        #expect(s.indirectChecks == 3 && s.retransmitMult == 4 && s.suspicionMult == 4 && s.suspicionMaxTimeoutMult == 6)
        #expect(s.pushPullInterval == .seconds(30) && s.gossipInterval == .milliseconds(200) && s.gossipNodes == 3)
        #expect(s.retransmitLimit(members: 1000) == 16)  // 4 × ceil(log10(1001))
        let t = s.suspicionTimeouts(members: 1000)
        #expect(abs(t.min.seconds - 12) < 0.01 && abs(t.max.seconds - 72) < 0.1)
        #expect(s.scaledPushPullInterval(members: 10) == .seconds(30))
        #expect(s.scaledPushPullInterval(members: 1000) == .seconds(180))
    }
}

@Suite struct EnvelopeTests {
    static func secret(_ b: UInt8) -> MeshSecret { try! MeshSecret(bytes: [UInt8](repeating: b, count: 32)) }

    static func node(_ i: Int, secret: MeshSecret) -> MeshNode {
        let (g, _) = Fixture.gossip(i)
        return MeshNode(gossip: g, sealer: GossipSealer(secret: secret))
    }

    /// B's join datagrams, sealed for `secret`.
    static func joinDatagrams(secret: MeshSecret) -> [[UInt8]] {
        var b = node(2, secret: secret)
        return b.join(seeds: [Fixture.endpoint(1)], now: .zero).compactMap {
            if case .datagram(let d, _) = $0 { return d } else { return nil }
        }
    }

    @Test func sealedPacketsFromTheMeshAreAccepted() {
        var a = Self.node(1, secret: Self.secret(1))
        for d in Self.joinDatagrams(secret: Self.secret(1)) { _ = a.receive(datagram: d, from: Fixture.endpoint(2), now: .zero) }
        #expect(a.gossip.memberCount == 2)
        #expect(a.counters.drops.total == 0)
    }

    @Test func foreignMeshPacketsAreDroppedBeforeAnyStateChanges() {
        var a = Self.node(1, secret: Self.secret(1))
        for d in Self.joinDatagrams(secret: Self.secret(2)) {
            #expect(a.receive(datagram: d, from: Fixture.endpoint(2), now: .zero).isEmpty)
        }
        #expect(a.gossip.memberCount == 1)
        #expect(a.counters.drops.notSealedForMesh == 2)
        #expect(a.gossip.counters.messagesIn == 0)
    }

    @Test func alteredTruncatedAndGarbagePacketsAreDroppedAndCounted() {
        var a = Self.node(1, secret: Self.secret(1))
        let d = Self.joinDatagrams(secret: Self.secret(1))[0]
        for i in [0, 1, 2, 10, 30, d.count - 1] {
            var t = d
            t[i] ^= 0x01
            _ = a.receive(datagram: t, from: Fixture.endpoint(2), now: .zero)
        }
        for n in [0, 1, 2, 20, d.count - 1] { _ = a.receive(datagram: Array(d.prefix(n)), from: Fixture.endpoint(2), now: .zero) }
        var rng = SeededRandom(seed: 5)
        for _ in 0..<200 { _ = a.receive(datagram: rng.bytes(Int(rng.next() % 200)), from: Fixture.endpoint(2), now: .zero) }
        #expect(a.gossip.memberCount == 1)
        #expect(a.gossip.counters.messagesIn == 0)
        #expect(a.counters.drops.total == 211)
        #expect(a.counters.drops.notSealedForMesh >= 6)
    }

    /// A replayed packet is accepted as authentic (it was), but changes nothing: every
    /// state change is versioned by incarnation and every reply matched by sequence number.
    @Test func replayedPacketsChangeNothing() {
        var a = Self.node(1, secret: Self.secret(1))
        let datagrams = Self.joinDatagrams(secret: Self.secret(1))
        for d in datagrams { _ = a.receive(datagram: d, from: Fixture.endpoint(2), now: .zero) }
        // Let a probe go out and be answered, so the ack below is a replay of a finished probe.
        let snapshot = { (g: Gossip) in
            g.members.values.map { "\($0.node) \($0.status) \($0.statusIncarnation) \($0.record.incarnation)" }.sorted()
                + ["me \(g.me.incarnation)", "awareness \(g.awareness)", "applied \(g.counters.updatesApplied)"]
        }
        let before = snapshot(a.gossip)
        for d in datagrams { _ = a.receive(datagram: d, from: Fixture.endpoint(2), now: .zero + .seconds(5)) }
        #expect(snapshot(a.gossip) == before)
        #expect(a.gossip.counters.staleUpdates > 0 || a.gossip.counters.updatesApplied == 1)
    }
}
