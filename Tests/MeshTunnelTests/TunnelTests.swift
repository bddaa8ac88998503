import MeshCore
import MeshCrypto
import Testing
@testable import MeshTunnel

/// Two or more tunnels wired by hand: every datagram goes where it is addressed, unless a
/// test intercepts it. Time moves only when a test says so.
struct Rig {
    struct Node {
        var tunnel: Tunnel
        let id: NodeID
        let endpoint: Endpoint
        let staticKey: X25519SecretKey
        var received: [[UInt8]] = []
        var events: [TunnelOutput] = []
    }

    var nodes: [Node] = []
    var now = Instant.zero
    /// Datagrams sent and not yet delivered: (to endpoint, bytes, from endpoint).
    var wire: [(to: Endpoint, bytes: [UInt8], from: Endpoint)] = []
    var settings = TunnelSettings()

    static func key(_ seed: UInt64) -> X25519SecretKey {
        var r = SeededRandom(seed: seed)
        return X25519SecretKey.generate(using: &r)
    }

    static func psk(_ seed: UInt8) -> SymmetricKey { try! SymmetricKey(bytes: [UInt8](repeating: seed, count: 32)) }

    @discardableResult
    mutating func add(seed: UInt64, psk: SymmetricKey = Rig.psk(1), staticKey: X25519SecretKey? = nil) -> Int {
        let k = staticKey ?? Self.key(seed)
        let id = NodeID(Bytes32([UInt8](repeating: UInt8(nodes.count + 1), count: 32))!)
        let ep = Endpoint(IPv4Address(127, 0, 0, 1), port: UInt16(40000 + nodes.count))
        nodes.append(Node(tunnel: Tunnel(staticKey: k, psk: psk, settings: settings, random: SeededRandom(seed: seed &* 31)),
                          id: id, endpoint: ep, staticKey: k))
        return nodes.count - 1
    }

    func peer(_ i: Int, staticKey: Bytes32? = nil, incarnation: UInt64 = 1) -> TunnelPeer {
        TunnelPeer(node: nodes[i].id, staticKey: staticKey ?? nodes[i].staticKey.publicKey.raw, endpoint: nodes[i].endpoint, incarnation: incarnation)
    }

    /// Everyone knows everyone as a live member.
    mutating func introduceAll() {
        for i in nodes.indices {
            let others = nodes.indices.filter { $0 != i }.map { peer($0) }
            handle(i, nodes[i].tunnel.setPeers(others, now: now))
        }
    }

    mutating func handle(_ i: Int, _ outputs: [TunnelOutput]) {
        for o in outputs {
            switch o {
            case .datagram(let bytes, let to): wire.append((to, bytes, nodes[i].endpoint))
            case .data(_, let payload): nodes[i].received.append(payload)
            default: nodes[i].events.append(o)
            }
        }
    }

    mutating func send(_ text: String, from i: Int, to j: Int) -> Tunnel.SendResult {
        let (r, out) = nodes[i].tunnel.send(Array(text.utf8), to: nodes[j].id, now: now)
        handle(i, out)
        return r
    }

    func index(of endpoint: Endpoint) -> Int? { nodes.firstIndex { $0.endpoint == endpoint } }

    /// Delivers everything on the wire (and what that causes), optionally altering or
    /// dropping datagrams on the way.
    mutating func run(_ filter: ((inout [UInt8]) -> Bool)? = nil) {
        var rounds = 0
        while !wire.isEmpty, rounds < 10_000 {
            rounds += 1
            var (to, bytes, from) = wire.removeFirst()
            if let filter, !filter(&bytes) { continue }
            guard let j = index(of: to) else { continue }
            handle(j, nodes[j].tunnel.receive(bytes, from: from, now: now))
        }
    }

    mutating func advance(_ span: Span) {
        now = now + span
        for i in nodes.indices { handle(i, nodes[i].tunnel.tick(now: now)) }
    }

    func text(_ i: Int) -> [String] { nodes[i].received.map { String(decoding: $0, as: UTF8.self) } }
}

@Suite("Tunnel sessions")
struct TunnelTests {
    func pair() -> Rig {
        var rig = Rig()
        rig.add(seed: 1)
        rig.add(seed: 2)
        rig.introduceAll()
        return rig
    }

    @Test("a handshake on demand, then data both ways; staged packets go out in order")
    func basic() {
        var rig = pair()
        #expect(rig.send("one", from: 0, to: 1) == .staged)
        #expect(rig.send("two", from: 0, to: 1) == .staged)
        rig.run()
        #expect(rig.text(1) == ["one", "two"])
        #expect(rig.nodes[0].tunnel.hasSession(with: rig.nodes[1].id, now: rig.now))
        #expect(rig.nodes[1].tunnel.hasSession(with: rig.nodes[0].id, now: rig.now))
        #expect(rig.send("back", from: 1, to: 0) == .sent)
        rig.run()
        #expect(rig.text(0) == ["back"])
        #expect(rig.nodes[0].tunnel.counters.handshakesCompleted == 1)
        #expect(rig.nodes[1].tunnel.counters.handshakesCompleted == 1)
    }

    @Test("the responder waits for the initiator's first packet before it sends")
    func responderConfirms() {
        var rig = pair()
        _ = rig.send("x", from: 0, to: 1)
        // Deliver only the initiation; the response stays on the wire.
        let initiation = rig.wire.removeFirst()
        rig.handle(1, rig.nodes[1].tunnel.receive(initiation.bytes, from: initiation.from, now: rig.now))
        #expect(!rig.nodes[1].tunnel.hasSession(with: rig.nodes[0].id, now: rig.now))
        #expect(rig.send("early", from: 1, to: 0) == .staged)
        #expect(rig.wire.count == 1, "no second handshake while the first awaits confirmation")
        rig.run()
        #expect(rig.text(0) == ["early"])
        #expect(rig.text(1) == ["x"])
        #expect(rig.nodes[1].tunnel.counters.handshakesInitiated == 0)
    }

    @Test("a responder whose session is never confirmed starts its own handshake after Rekey-Timeout")
    func unconfirmed() {
        var rig = pair()
        _ = rig.send("x", from: 0, to: 1)
        let initiation = rig.wire.removeFirst()
        rig.handle(1, rig.nodes[1].tunnel.receive(initiation.bytes, from: initiation.from, now: rig.now))
        rig.wire.removeAll()  // the response is lost; node 0 will retry, but node 1 has news
        #expect(rig.send("waiting", from: 1, to: 0) == .staged)
        rig.advance(.seconds(5))
        #expect(rig.nodes[1].tunnel.counters.handshakesInitiated == 1)
        // Node 0's own retry is due too: the crossing is resolved, one session results.
        rig.run()
        rig.advance(.seconds(1))
        rig.run()
        #expect(rig.text(0) == ["waiting"])
        #expect(rig.text(1) == ["x"])
    }

    @Test("tampered, replayed, truncated and wrong-index packets are dropped and counted")
    func drops() {
        var rig = pair()
        _ = rig.send("hello", from: 0, to: 1)
        rig.run()
        _ = rig.send("secret", from: 0, to: 1)
        let good = rig.wire.removeFirst().bytes
        let from = rig.nodes[0].endpoint
        func deliver(_ b: [UInt8]) { rig.handle(1, rig.nodes[1].tunnel.receive(b, from: from, now: rig.now)) }

        var tampered = good
        tampered[tampered.count - 20] ^= 0x01
        deliver(tampered)
        #expect(rig.nodes[1].tunnel.counters.drops.badMAC == 1)

        var counterChanged = good
        counterChanged[7] ^= 0x01
        deliver(counterChanged)
        #expect(rig.nodes[1].tunnel.counters.drops.badMAC == 2)

        deliver(Array(good.prefix(Tunnel.transportHeaderSize + 10)))
        #expect(rig.nodes[1].tunnel.counters.drops.malformed == 1)

        var wrongIndex = good
        wrongIndex[2] ^= 0xff
        deliver(wrongIndex)
        #expect(rig.nodes[1].tunnel.counters.drops.unknownIndex == 1)

        #expect(rig.text(1) == ["hello"])
        deliver(good)
        deliver(good)
        #expect(rig.text(1) == ["hello", "secret"])
        #expect(rig.nodes[1].tunnel.counters.drops.replay == 1)

        // A replayed handshake initiation is refused too.
        var rig2 = pair()
        _ = rig2.send("a", from: 0, to: 1)
        let initiation = rig2.wire[0]
        rig2.run()
        rig2.handle(1, rig2.nodes[1].tunnel.receive(initiation.bytes, from: initiation.from, now: rig2.now))
        #expect(rig2.wire.isEmpty)
        #expect(rig2.nodes[1].tunnel.counters.drops.replay == 1)
    }

    @Test("a node without the mesh key gets no session, and is not even answered")
    func wrongPSK() {
        var rig = Rig()
        rig.add(seed: 1)
        rig.add(seed: 2, psk: Rig.psk(9))
        rig.introduceAll()
        _ = rig.send("let me in", from: 1, to: 0)
        rig.run()
        #expect(rig.text(0).isEmpty)
        #expect(rig.nodes[0].tunnel.counters.drops.badMAC == 1)
        #expect(rig.nodes[0].tunnel.counters.handshakesCompleted == 0)
        #expect(!rig.nodes[1].tunnel.hasSession(with: rig.nodes[0].id, now: rig.now))
    }

    @Test("with the mesh key but a key that is no live member's: not answered")
    func notMember() {
        var rig = Rig()
        rig.add(seed: 1)
        rig.add(seed: 2)
        // Node 1 knows node 0; node 0 does not list node 1 among its live members.
        rig.handle(1, rig.nodes[1].tunnel.setPeers([rig.peer(0)], now: rig.now))
        _ = rig.send("hi", from: 1, to: 0)
        rig.run()
        #expect(rig.nodes[0].tunnel.counters.drops.notMember == 1)
        #expect(rig.text(0).isEmpty)
        // Once a member, the retry succeeds.
        rig.handle(0, rig.nodes[0].tunnel.setPeers([rig.peer(1)], now: rig.now))
        rig.advance(.seconds(6))
        rig.run()
        #expect(rig.text(0) == ["hi"])
    }

    @Test("a member cannot complete a handshake while claiming another member's identity")
    func impersonation() {
        var rig = Rig()
        rig.add(seed: 1)  // victim responder
        rig.add(seed: 2)  // honest member
        rig.add(seed: 3)  // the impostor, a member with its own key
        rig.introduceAll()
        // The impostor (a member, with the mesh key) writes the honest member's public key as
        // its static key, but can only compute `ss` with its own private key.
        var hs = Noise.IKHandshake(role: .initiator, prologue: Tunnel.prologue, psk: Array(repeating: 1, count: 32),
                                   staticKey: rig.nodes[2].staticKey, ephemeral: Rig.key(99), remoteStatic: rig.nodes[0].staticKey.publicKey.bytes)
        hs.sPublic = rig.nodes[1].staticKey.publicKey.bytes
        let payload = [UInt8](repeating: 0, count: 7) + [1] + [UInt8](repeating: 5, count: 8)
        var msg: [UInt8] = [1, 3, 0, 0, 0, 7] + (try! hs.writeMessage(payload))
        let macKey = Blake2b.hash(Array("meshwork handshake mac1 v1".utf8), outputLength: 32, key: Rig.psk(1))
        msg += macKey.withUnsafeBytes { Blake2b.hash(msg, outputLength: 16, keyBytes: $0) }
        #expect(msg.count == Tunnel.initiationSize)
        rig.handle(0, rig.nodes[0].tunnel.receive(msg, from: rig.nodes[2].endpoint, now: rig.now))
        #expect(rig.wire.isEmpty, "no response to the impostor")
        #expect(rig.nodes[0].tunnel.counters.drops.badMAC == 1)
        #expect(rig.nodes[0].tunnel.counters.handshakesCompleted == 0)
        // A handshake made with the impostor's own key names the impostor, and only it.
        _ = rig.send("me", from: 2, to: 0)
        rig.run()
        #expect(rig.nodes[0].tunnel.hasSession(with: rig.nodes[2].id, now: rig.now))
        #expect(!rig.nodes[0].tunnel.hasSession(with: rig.nodes[1].id, now: rig.now))
    }

    @Test("simultaneous initiation ends in one session, chosen by the lower static key")
    func simultaneous() {
        var rig = pair()
        _ = rig.send("from 0", from: 0, to: 1)
        _ = rig.send("from 1", from: 1, to: 0)
        #expect(rig.wire.count == 2)
        rig.run()
        #expect(rig.text(0) == ["from 1"])
        #expect(rig.text(1) == ["from 0"])
        let c0 = rig.nodes[0].tunnel.counters, c1 = rig.nodes[1].tunnel.counters
        #expect(c0.simultaneousWon + c1.simultaneousWon == 1)
        #expect(c0.simultaneousYielded + c1.simultaneousYielded == 1)
        let lowerIs0 = rig.nodes[0].tunnel.staticPublic < rig.nodes[1].tunnel.staticPublic
        #expect((lowerIs0 ? c0 : c1).simultaneousWon == 1)
        // Exactly one session: each side's current keys are the other's.
        let k0 = rig.nodes[0].tunnel.peers[rig.nodes[1].id]!.current!, k1 = rig.nodes[1].tunnel.peers[rig.nodes[0].id]!.current!
        #expect(k0.localIndex == k1.remoteIndex && k1.localIndex == k0.remoteIndex)
    }

    @Test("rekey after a message count and after a time loses no message")
    func rekey() {
        var rig = Rig()
        rig.settings.rekeyAfterMessages = 50
        rig.settings.rekeyAfterTime = .seconds(2)
        rig.settings.rejectAfterTime = .seconds(3)
        rig.add(seed: 1)
        rig.add(seed: 2)
        rig.introduceAll()
        var sent: [String] = []
        for i in 0..<400 {
            let t = "m\(i)"
            sent.append(t)
            _ = rig.send(t, from: 0, to: 1)
            // Half the time deliver at once; otherwise let packets pile up across a rekey.
            if i % 3 != 0 { rig.run() }
            if i % 40 == 0 { rig.advance(.milliseconds(300)) }
        }
        rig.run()
        #expect(rig.text(1) == sent)
        #expect(rig.nodes[0].tunnel.counters.handshakesCompleted >= 5)
        #expect(rig.nodes[1].tunnel.counters.drops.total == 0)
    }

    @Test("a session past its limit is refused; sending waits for a new one")
    func hardLimit() {
        var rig = Rig()
        rig.settings.rejectAfterMessages = 10
        rig.settings.rekeyAfterMessages = 1000  // so only the hard limit acts
        rig.add(seed: 1)
        rig.add(seed: 2)
        rig.introduceAll()
        for i in 0..<25 { _ = rig.send("\(i)", from: 0, to: 1); rig.run() }
        #expect(rig.text(1) == (0..<25).map(String.init))
        #expect(rig.nodes[0].tunnel.counters.handshakesCompleted >= 3)
        // A packet with a counter at the limit is refused by the receiver.
        // Exhaust the current session (a keypair is a reference: this is the tunnel's own).
        let c = rig.nodes[0].tunnel.peers[rig.nodes[1].id]!.current!
        c.sendCounter = 10
        _ = rig.send("over", from: 0, to: 1)
        rig.run()
        #expect(rig.text(1).last == "over")  // sent on a fresh session, not the exhausted one
    }

    @Test("handshake retries with jitter, then gives up after the attempt time and drops what waited")
    func retries() {
        var rig = pair()
        _ = rig.send("lost", from: 0, to: 1)
        var times: [Instant] = []
        var t = 0
        while rig.nodes[0].events.isEmpty, t < 2000 {
            if !rig.wire.isEmpty { times.append(rig.now); rig.wire.removeAll() }
            rig.advance(.milliseconds(100))
            t += 1
        }
        let c = rig.nodes[0].tunnel.counters
        #expect(c.handshakesFailed == 1)
        #expect(c.drops.staged == 1)
        guard case .failed? = rig.nodes[0].events.first else { Issue.record("no failure event"); return }
        // One initiation, then one each rekeyTimeout + jitter (5 s to 5.334 s) for 90 s.
        #expect(times.count >= 17 && times.count <= 19)
        let gaps = zip(times.dropFirst(), times).map { ($0 - $1).seconds }
        #expect(gaps.allSatisfy { $0 >= 5.0 && $0 <= 5.5 })
        #expect(Set(gaps.map { Int($0 * 10) }).count > 1, "the retries are jittered")
    }

    @Test("keepalives answer data after the keepalive timeout; silence after data starts a new handshake")
    func keepalives() {
        var rig = pair()
        _ = rig.send("ping", from: 0, to: 1)
        rig.run()
        let before = rig.nodes[1].tunnel.counters.keepalivesSent
        rig.advance(.seconds(11))
        rig.run()
        #expect(rig.nodes[1].tunnel.counters.keepalivesSent == before + 1)
        #expect(rig.nodes[0].tunnel.counters.keepalivesReceived >= 1)
        // Now node 1 vanishes: data from 0 goes unanswered, so 0 starts a handshake.
        _ = rig.send("anyone?", from: 0, to: 1)
        rig.wire.removeAll()
        let initiated = rig.nodes[0].tunnel.counters.handshakesInitiated
        rig.advance(.seconds(16))
        #expect(rig.nodes[0].tunnel.counters.handshakesInitiated == initiated + 1)
    }

    @Test("a peer that restarts is noticed by its boot ID")
    func restart() {
        var rig = pair()
        _ = rig.send("before", from: 0, to: 1)
        rig.run()
        // Node 1 restarts: same static key, fresh state, new boot ID, new incarnation.
        rig.nodes[1].tunnel = Tunnel(staticKey: rig.nodes[1].staticKey, psk: Rig.psk(1), random: SeededRandom(seed: 777), epochNanos: 1_000_000_000)
        rig.handle(1, rig.nodes[1].tunnel.setPeers([rig.peer(0)], now: rig.now))
        rig.handle(0, rig.nodes[0].tunnel.setPeers([rig.peer(1, incarnation: 2)], now: rig.now))
        // A new incarnation with the same key starts a handshake (it may be only a refuted
        // suspicion: the sessions stay until the handshake tells).
        #expect(rig.nodes[0].tunnel.counters.handshakesInitiated == 2)
        #expect(!rig.nodes[0].events.contains { if case .reset = $0 { return true } else { return false } })
        _ = rig.send("after", from: 0, to: 1)
        rig.run()
        #expect(rig.text(1) == ["before", "after"])
        #expect(rig.nodes[0].events.contains { if case .restarted = $0 { return true } else { return false } })
    }
}
