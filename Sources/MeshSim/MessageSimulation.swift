import MeshCore
import MeshCrypto
import MeshTunnel

/// Two nodes with real sessions (Noise handshakes, ChaCha20-Poly1305, replay windows) and
/// the reliable messenger, over a virtual link that loses, delays and reorders datagrams.
/// Both send `count` messages to the other as fast as the messenger takes them; the run
/// checks every message arrives exactly once and in order. Deterministic from `seed`.
public struct MessageScenario: Sendable {
    public var count = 10_000
    public var loss = 0.1
    /// One-way delay: `latency` plus uniform jitter; jitter larger than the gap between
    /// packets reorders them.
    public var latency = Span.milliseconds(10)
    public var jitter = Span.milliseconds(20)
    /// Every this many messages is a large one (several fragments); 0 for none.
    public var largeEvery = 100
    public var largeSize = 20_000
    /// Forces rekeys during the run (WireGuard's default would never rekey in a run this short).
    public var rekeyAfterMessages: UInt64 = 2000
    public var seed: UInt64 = 1
    public var limit = Span.seconds(3600)

    public init() {}

    public struct Report: Sendable, Encodable {
        public var sent = 0
        public var delivered = 0
        public var inOrder = true
        public var duplicates = 0
        public var missing = 0
        public var corrupted = 0
        public var acknowledged = 0
        public var failed = 0
        public var datagrams = 0
        public var datagramsLost = 0
        public var retransmits = 0
        public var handshakes = 0
        public var tunnelDrops = 0
        public var simulatedSeconds = 0.0
        public var ok: Bool { inOrder && duplicates == 0 && missing == 0 && corrupted == 0 && failed == 0 && acknowledged == sent }
    }

    enum Event { case deliver([UInt8], to: Int, from: Endpoint), wake }

    /// The content of message `i` from `sender`: its number in the first 8 bytes, so
    /// order and identity can be checked on arrival.
    func content(_ i: Int, from sender: Int) -> [UInt8] {
        var b = [UInt8](repeating: UInt8(truncatingIfNeeded: sender * 31 + i), count: largeEvery > 0 && i % largeEvery == largeEvery - 1 ? largeSize : 40)
        for k in 0..<8 { b[k] = UInt8(truncatingIfNeeded: i >> (8 * k)) }
        return b
    }

    public func run() -> Report {
        var rng = SeededRandom(seed: seed)
        var settings = TunnelSettings()
        settings.rekeyAfterMessages = rekeyAfterMessages
        let psk = SymmetricKey.random(using: &rng)
        var layers: [SessionLayer] = []
        var ids: [NodeID] = []
        var endpoints: [Endpoint] = []
        var keys: [X25519SecretKey] = []
        for i in 0..<2 {
            let k = X25519SecretKey.generate(using: &rng)
            keys.append(k)
            ids.append(NodeID(Bytes32(rng.bytes(32))!))
            endpoints.append(Endpoint(IPv4Address(198, 18, 0, UInt8(i + 1)), port: 4000))
            layers.append(SessionLayer(tunnel: Tunnel(staticKey: k, psk: psk, settings: settings, random: SeededRandom(seed: rng.next())),
                                       messenger: Messenger(epoch: rng.next())))
        }
        var queue = EventQueue<Event>()
        var now = Instant.zero
        var report = Report()
        var nextToSend = [0, 0]
        var expected = [0, 0]  // next message number each node expects from the other

        func transmit(_ outputs: [SessionLayer.Output], from i: Int) {
            for o in outputs {
                switch o {
                case .datagram(let d, _):
                    report.datagrams += 1
                    if Double(rng.next() % 1_000_000) / 1e6 < loss { report.datagramsLost += 1; continue }
                    let j = jitter.nanoseconds > 0 ? Int64(rng.next() % UInt64(jitter.nanoseconds)) : 0
                    queue.push(now + latency + Span(nanoseconds: j), .deliver(d, to: 1 - i, from: endpoints[i]))
                case .message(_, let bytes):
                    var n = 0
                    for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
                    if n < expected[i] { report.duplicates += 1 }
                    else if n > expected[i] { report.inOrder = false; report.missing += n - expected[i]; expected[i] = n + 1 }
                    else { expected[i] += 1 }
                    if bytes != content(n, from: 1 - i) { report.corrupted += 1 }
                    report.delivered += 1
                case .acknowledged: report.acknowledged += 1
                case .failed: report.failed += 1
                case .established, .packet, .pong, .pool: break
                }
            }
        }

        func top(_ i: Int) {
            // Keep each messenger fed with a few hundred messages in hand.
            while nextToSend[i] < count, layers[i].messenger.pending(to: ids[1 - i]) < 512 {
                let (r, out) = layers[i].send(content(nextToSend[i], from: i), to: ids[1 - i], deadline: now + limit, now: now)
                guard case .success = r else { break }
                report.sent += 1
                nextToSend[i] += 1
                transmit(out, from: i)
            }
        }

        for i in 0..<2 {
            let peer = TunnelPeer(node: ids[1 - i], staticKey: keys[1 - i].publicKey.raw, endpoint: endpoints[1 - i], incarnation: 1)
            transmit(layers[i].setPeers([peer], now: now), from: i)
        }
        for i in 0..<2 { top(i) }
        queue.push(.zero, .wake)
        while let (t, e) = queue.pop(), t <= .zero + limit {
            now = t
            switch e {
            case .deliver(let d, let to, let from):
                transmit(layers[to].receive(d, from: from, now: now), from: to)
                transmit(layers[to].endOfBatch(now: now), from: to)
                top(to)
            case .wake:
                for i in 0..<2 {
                    transmit(layers[i].tick(now: now), from: i)
                    top(i)
                }
            }
            if report.acknowledged == 2 * count { break }
            let wake = min(layers[0].nextDeadline, layers[1].nextDeadline)
            if queue.nextTime.map({ wake < $0 }) ?? true, wake < .distantFuture { queue.push(max(wake, now), .wake) }
        }
        report.missing += (0..<2).map { count - expected[$0] }.reduce(0, +)
        report.retransmits = layers.map(\.messenger.counters.retransmits).reduce(0, +)
        report.handshakes = layers.map(\.tunnel.counters.handshakesCompleted).reduce(0, +)
        report.tunnelDrops = layers.map(\.tunnel.counters.drops.total).reduce(0, +)
        report.simulatedSeconds = (now - .zero).seconds
        return report
    }
}
