import MeshCore
import MeshCrypto

/// A member this node may hold a session with: what its signed membership record says.
public struct TunnelPeer: Sendable, Equatable {
    public var node: NodeID
    /// The X25519 static key from the member's signed record.
    public var staticKey: Bytes32
    public var endpoint: Endpoint?
    public var incarnation: UInt64

    public init(node: NodeID, staticKey: Bytes32, endpoint: Endpoint?, incarnation: UInt64) {
        self.node = node
        self.staticKey = staticKey
        self.endpoint = endpoint
        self.incarnation = incarnation
    }
}

/// How a datagram reached this node, or how one goes to a peer: straight to an endpoint,
/// or through a member that relays it (it sees only this session's ciphertext).
public enum Route: Sendable, Equatable {
    case direct(Endpoint)
    case relay(NodeID)
}

public enum TunnelOutput: Sendable {
    case datagram([UInt8], to: Endpoint)
    /// A datagram for `to`, to be carried by the member `via` (over the session with it).
    case relay([UInt8], via: NodeID, to: NodeID)
    /// A decrypted, authenticated, non-replayed payload (never empty: keepalives stay here).
    case data(from: NodeID, [UInt8])
    /// A session with this peer is ready to send on.
    case established(NodeID)
    /// A handshake got no answer for `rekeyAttemptTime`: the packets staged for it are dropped.
    case failed(NodeID)
    /// The peer restarted, changed its key or stopped being a live member: every session
    /// with it is gone (what was in flight on them is lost).
    case reset(NodeID)
    /// A handshake showed the peer runs with a new boot ID: it restarted and forgot
    /// whatever state rode on the old sessions.
    case restarted(NodeID)
}

public struct TunnelCounters: Sendable, Equatable, Codable {
    public struct Drops: Sendable, Equatable, Codable {
        /// Failed authentication: a transport packet that does not open, a handshake whose
        /// MAC or Noise payload does not verify (outside the mesh, tampered, or forged).
        public var badMAC = 0
        /// A counter already seen or too old for the window; a handshake initiation not newer
        /// than the last one from that peer.
        public var replay = 0
        /// A transport packet or response for a receiver index this node does not hold.
        public var unknownIndex = 0
        /// A handshake from a static key that is not a live member's.
        public var notMember = 0
        /// Wrong length for its type.
        public var malformed = 0
        /// On a session past `rejectAfterTime` or `rejectAfterMessages`.
        public var expired = 0
        /// Staged for a handshake that failed, or pushed out of a full stage.
        public var staged = 0
        public init() {}
        public var total: Int { badMAC + replay + unknownIndex + notMember + malformed + expired + staged }
    }

    public var handshakesInitiated = 0
    public var handshakeRetries = 0
    /// Handshakes completed, as initiator (response read) or responder (response sent).
    public var handshakesCompleted = 0
    /// Handshakes given up after `rekeyAttemptTime`.
    public var handshakesFailed = 0
    /// Initiations crossing on the wire: this node's won, the peer's was ignored / this node yielded.
    public var simultaneousWon = 0
    public var simultaneousYielded = 0
    public var keepalivesSent = 0
    public var keepalivesReceived = 0
    public var packetsIn = 0
    public var packetsOut = 0
    /// Payload bytes (before encryption / after decryption).
    public var bytesIn = 0
    public var bytesOut = 0
    public var drops = Drops()
    public init() {}
}

/// One direction-pair of transport keys, from one completed handshake. A class so that
/// the receive path updates its counter and replay window in place (no copy per packet);
/// only its `Tunnel` touches it, on one thread.
final class Keypair: @unchecked Sendable {
    let node: NodeID
    let localIndex: UInt32
    let remoteIndex: UInt32
    let sendKey: SymmetricKey
    let receiveKey: SymmetricKey
    var sendCounter: UInt64 = 0
    var window = ReplayWindow()
    let created: Instant
    let isInitiator: Bool

    init(node: NodeID, localIndex: UInt32, remoteIndex: UInt32, sendKey: SymmetricKey, receiveKey: SymmetricKey, created: Instant, isInitiator: Bool) {
        self.node = node
        self.localIndex = localIndex
        self.remoteIndex = remoteIndex
        self.sendKey = sendKey
        self.receiveKey = receiveKey
        self.created = created
        self.isInitiator = isInitiator
    }
}

/// The data-plane session layer, sans-I/O: Noise IKpsk2 handshakes with live members,
/// transport encryption with 64-bit counters and an RFC 6479 replay window, and
/// WireGuard's timers (rekey, reject, retries with jitter, keepalives). Payloads in, UDP
/// datagrams out, and the reverse. docs/handshake.md describes the wire and the timers.
public struct Tunnel: Sendable {
    public static let prologue = Array("meshwork handshake v1".utf8)
    static let headerSize = 2
    public static let initiationSize = headerSize + 4 + 32 + 48 + 32 + 16
    public static let responseSize = headerSize + 4 + 4 + 32 + 24 + 16
    /// Header, receiver index, counter.
    public static let transportHeaderSize = headerSize + 4 + 8
    public static let overhead = transportHeaderSize + ChaChaPoly.tagBytes
    static let macSize = 16
    static let version: UInt8 = 1
    static let typeInitiation: UInt8 = 3, typeResponse: UInt8 = 4, typeTransport: UInt8 = 5

    struct Pending: Sendable {
        var handshake: Noise.IKHandshake
        let localIndex: UInt32
        let firstAttempt: Instant
        var retryAt: Instant
        let sentAt: Instant
        /// A direct try while traffic goes through a relay: if it goes unanswered, nothing fails.
        var probe = false
    }

    struct PeerState: Sendable {
        var info: TunnelPeer
        /// Where the last authenticated packet came from (roaming), preferred to the record's.
        var roamed: Endpoint?
        var current: Keypair?
        var previous: Keypair?
        /// A responder's session, usable once the initiator's first packet on it arrives.
        var next: Keypair?
        var pending: Pending?
        var greatestTimestamp: UInt64 = 0
        /// The peer's boot ID, from its last handshake.
        var boot: UInt64?
        /// The member relaying to this peer, while the direct path does not answer.
        var via: NodeID?
        /// Handshake attempts since the last success (picks direct or which relay).
        var attempts = 0
        /// When to try the direct path again while relayed.
        var nextDirectProbe: Instant?
        /// The round trip of the last handshake this node initiated with the peer.
        var lastRTT: Span?
        /// The peer has a new incarnation: hold sends (staged) until the handshake that
        /// checks whether its keys survived completes.
        var verifying = false
        var staged: [[UInt8]] = []
        /// When data went out with nothing received since (the dead-peer timer).
        var unansweredSince: Instant?
        /// When a keepalive is due, unless something else goes out first.
        var keepaliveDue: Instant?

        var endpoint: Endpoint? { roamed ?? info.endpoint }
    }

    enum IndexEntry: Sendable {
        case keypair(Keypair)
        case pending(NodeID)
    }

    public let settings: TunnelSettings
    let staticKey: X25519SecretKey
    public let staticPublic: Bytes32
    let psk: [UInt8]
    let mac1Key: [UInt8]
    let epochNanos: UInt64
    /// Random per run of this node, told to peers in every handshake.
    public let boot: UInt64
    var lastTimestamp: UInt64 = 0
    var random: any RandomSource & Sendable
    var peers: [NodeID: PeerState] = [:]
    var byStatic: [Bytes32: NodeID] = [:]
    var indices: [UInt32: IndexEntry] = [:]
    public internal(set) var counters = TunnelCounters()
    public internal(set) var nextDeadline: Instant = .distantFuture

    /// - Parameters:
    ///   - psk: the mesh's data-plane pre-shared key (`MeshSecret.derive(.dataPlanePSK)`).
    ///   - random: ephemeral keys and indices; a CSPRNG in a real node (`SodiumRandom`).
    ///   - epochNanos: wall-clock time at `Instant.zero`, for handshake timestamps (so that
    ///     a restarted node's initiations are newer than its last run's).
    public init(staticKey: X25519SecretKey, psk: SymmetricKey, settings: TunnelSettings = TunnelSettings(),
                random: any RandomSource & Sendable, epochNanos: UInt64 = 0) {
        var random = random
        boot = random.next()
        self.staticKey = staticKey
        staticPublic = staticKey.publicKey.raw
        self.psk = psk.withUnsafeBytes { Array($0) }
        mac1Key = Blake2b.hash(Array("meshwork handshake mac1 v1".utf8), outputLength: 32, key: psk)
        self.settings = settings
        self.random = random
        self.epochNanos = epochNanos
    }

    // MARK: - Membership

    /// The live members (anyone else is refused). A peer that is gone, restarted (new
    /// incarnation) or changed its key loses its sessions: `.reset`.
    public mutating func setPeers(_ list: [TunnelPeer], now: Instant) -> [TunnelOutput] {
        var out: [TunnelOutput] = []
        let wanted = Dictionary(list.map { ($0.node, $0) }, uniquingKeysWith: { a, _ in a })
        for node in peers.keys.sorted() where wanted[node] == nil {
            drop(node, keepPeer: false)
            out.append(.reset(node))
        }
        for p in list {
            if let old = peers[p.node]?.info {
                if old.staticKey != p.staticKey {
                    drop(p.node, keepPeer: true)
                    peers[p.node]!.greatestTimestamp = 0
                    peers[p.node]!.boot = nil
                    out.append(.reset(p.node))
                } else if old.incarnation != p.incarnation, peers[p.node]!.current != nil, peers[p.node]!.pending == nil {
                    // A new incarnation: a restart (its keys are gone) or only a refuted
                    // suspicion. A handshake tells which (boot ID) and costs one round trip.
                    peers[p.node]!.info = p
                    peers[p.node]!.verifying = true
                    out += startHandshake(p.node, now: now)
                }
                if old.endpoint != p.endpoint { peers[p.node]!.roamed = nil }
                peers[p.node]!.info = p
            } else {
                peers[p.node] = PeerState(info: p)
            }
        }
        // A peer relayed through a member that is gone goes direct again (its next retry
        // picks another relay if direct does not answer).
        for node in peers.keys.sorted() where peers[node]!.via.map({ peers[$0] == nil }) ?? false {
            peers[node]!.via = nil
        }
        byStatic = Dictionary(list.map { ($0.staticKey, $0.node) }, uniquingKeysWith: { a, _ in a })
        byStatic[staticPublic] = nil
        return out
    }

    /// Forgets a peer's sessions (keys and indices), or the peer as a whole.
    mutating func drop(_ node: NodeID, keepPeer: Bool) {
        guard let p = peers[node] else { return }
        for kp in [p.current, p.previous, p.next].compactMap({ $0 }) { indices[kp.localIndex] = nil }
        if let pending = p.pending { indices[pending.localIndex] = nil }
        if keepPeer {
            peers[node]!.current = nil
            peers[node]!.previous = nil
            peers[node]!.next = nil
            peers[node]!.pending = nil
            peers[node]!.unansweredSince = nil
            peers[node]!.keepaliveDue = nil
        } else {
            counters.drops.staged += p.staged.count
            peers[node] = nil
        }
    }

    public func isPeer(_ node: NodeID) -> Bool { peers[node] != nil }

    /// How traffic to `node` goes now: direct (with the endpoint), through a relay, or unknown.
    public func route(to node: NodeID) -> Route? {
        guard let p = peers[node] else { return nil }
        if let via = p.via { return .relay(via) }
        return p.endpoint.map { .direct($0) }
    }

    /// The round trip of the last handshake this node initiated with `node`.
    public func lastRTT(of node: NodeID) -> Span? { peers[node]?.lastRTT }

    /// A datagram for `node` along its current route.
    func emit(_ bytes: [UInt8], for node: NodeID) -> TunnelOutput? {
        guard let p = peers[node] else { return nil }
        if let via = p.via { return .relay(bytes, via: via, to: node) }
        return p.endpoint.map { .datagram(bytes, to: $0) }
    }

    /// An authenticated datagram from `node` came by `route`: answer the same way.
    mutating func arrived(_ node: NodeID, by route: Route) {
        switch route {
        case .direct(let e):
            peers[node]!.roamed = e
            peers[node]!.via = nil
            peers[node]!.nextDirectProbe = nil
        case .relay(let r):
            // Only through a member reached directly, never the sender itself: no loops.
            if r != node, let relay = peers[r], relay.via == nil { peers[node]!.via = r }
        }
    }

    /// Members that could relay to `node`: live peers reached directly, those with a
    /// session first.
    func relayCandidates(for node: NodeID, now: Instant) -> [NodeID] {
        let direct = peers.values.filter { $0.info.node != node && $0.via == nil && $0.endpoint != nil }
        let withSession = direct.filter { $0.current.map { usable($0, now: now) } ?? false }.map(\.info.node).sorted()
        let others = direct.filter { !($0.current.map { usable($0, now: now) } ?? false) }.map(\.info.node).sorted()
        return withSession + others
    }

    /// Whether a session with `node` can carry data now.
    public func hasSession(with node: NodeID, now: Instant) -> Bool {
        guard let kp = peers[node]?.current else { return false }
        return usable(kp, now: now)
    }

    /// Sessions that can carry data now.
    public func sessionCount(now: Instant) -> Int { peers.values.filter { $0.current.map { usable($0, now: now) } ?? false }.count }

    /// Whether a handshake with `node` is under way.
    public func isHandshaking(with node: NodeID) -> Bool { peers[node]?.pending != nil }

    func usable(_ kp: Keypair, now: Instant) -> Bool {
        now - kp.created < settings.rejectAfterTime && kp.sendCounter < settings.rejectAfterMessages
    }

    // MARK: - Sending

    public enum SendResult: Sendable, Equatable {
        case sent
        /// Waiting for a handshake (started now if none was under way).
        case staged
        case unknownPeer
    }

    /// Encrypts `payload` for `node` on its current session, or stages it and starts a
    /// handshake. Starts a rekey when the session is due one (and keeps using it meanwhile).
    public mutating func send(_ payload: [UInt8], to node: NodeID, now: Instant) -> (SendResult, [TunnelOutput]) {
        guard let peer = peers[node] else { return (.unknownPeer, []) }
        var out: [TunnelOutput] = []
        if let kp = peer.current, usable(kp, now: now), peer.via != nil || peer.endpoint != nil, !(peer.verifying && peer.pending != nil) {
            if let o = emit(seal(payload, kp), for: node) { out.append(o) }
            noteSent(node, data: !payload.isEmpty, now: now)
            let rekey = (kp.isInitiator && now - kp.created >= settings.rekeyAfterTime) || kp.sendCounter >= settings.rekeyAfterMessages
            if rekey && peer.pending == nil { out += startHandshake(node, now: now) }
            return (.sent, out)
        }
        if peers[node]!.staged.count >= settings.maxStagedPackets {
            peers[node]!.staged.removeFirst()
            counters.drops.staged += 1
        }
        peers[node]!.staged.append(payload)
        // A responder whose new session awaits the initiator's first packet waits for it
        // (for up to Rekey-Timeout) rather than start a second handshake.
        if let n = peer.next, now - n.created < settings.rekeyTimeout {
            schedule(n.created + settings.rekeyTimeout)
        } else if peer.pending == nil {
            out += startHandshake(node, now: now)
        }
        return (.staged, out)
    }

    mutating func noteSent(_ node: NodeID, data: Bool, now: Instant) {
        peers[node]!.keepaliveDue = nil
        if data, peers[node]!.unansweredSince == nil {
            peers[node]!.unansweredSince = now
            schedule(now + settings.keepaliveTimeout + settings.rekeyTimeout)
        }
    }

    /// One transport packet: header, receiver index, counter, sealed payload.
    mutating func seal(_ payload: [UInt8], _ kp: Keypair) -> [UInt8] {
        let counter = kp.sendCounter
        kp.sendCounter += 1
        let h = Self.transportHeaderSize
        var packet = [UInt8](repeating: 0, count: h + payload.count + ChaChaPoly.tagBytes)
        packet.withUnsafeMutableBytes { b in
            b[0] = Self.version
            b[1] = Self.typeTransport
            b.storeBytes(of: kp.remoteIndex.bigEndian, toByteOffset: 2, as: UInt32.self)
            b.storeBytes(of: counter.littleEndian, toByteOffset: 6, as: UInt64.self)
            payload.withUnsafeBytes { p in
                if p.count > 0 { UnsafeMutableRawBufferPointer(rebasing: b[h...]).copyMemory(from: p) }
            }
            _ = ChaChaPoly.sealInPlace(UnsafeMutableRawBufferPointer(rebasing: b[h...]), plaintextCount: payload.count,
                                       key: kp.sendKey, counter: counter)
        }
        counters.packetsOut += 1
        counters.bytesOut += payload.count
        if payload.isEmpty { counters.keepalivesSent += 1 }
        return packet
    }

    // MARK: - Receiving

    /// A datagram of type handshake initiation, handshake response or transport data.
    public mutating func receive(_ d: [UInt8], from source: Endpoint, now: Instant) -> [TunnelOutput] {
        receive(d, by: .direct(source), now: now)
    }

    /// A datagram that came through a relaying member (end-to-end: the relay could not read it).
    public mutating func receive(_ d: [UInt8], by source: Route, now: Instant) -> [TunnelOutput] {
        guard d.count >= Self.headerSize, d[0] == Self.version else { counters.drops.malformed += 1; return [] }
        switch d[1] {
        case Self.typeInitiation: return receiveInitiation(d, from: source, now: now)
        case Self.typeResponse: return receiveResponse(d, from: source, now: now)
        case Self.typeTransport: return receiveTransport(d, from: source, now: now)
        default:
            counters.drops.malformed += 1
            return []
        }
    }

    mutating func receiveTransport(_ d: [UInt8], from source: Route, now: Instant) -> [TunnelOutput] {
        let h = Self.transportHeaderSize
        guard d.count >= h + ChaChaPoly.tagBytes else { counters.drops.malformed += 1; return [] }
        let (index, counter) = d.withUnsafeBytes { b in
            (UInt32(bigEndian: b.loadUnaligned(fromByteOffset: 2, as: UInt32.self)),
             UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 6, as: UInt64.self)))
        }
        guard case .keypair(let kp)? = indices[index] else { counters.drops.unknownIndex += 1; return [] }
        guard now - kp.created < settings.rejectAfterTime, counter < settings.rejectAfterMessages else {
            counters.drops.expired += 1
            return []
        }
        var plain = Array(d[h...])
        let n = plain.withUnsafeMutableBytes { b in
            ChaChaPoly.openInPlace(b, sealedCount: b.count, key: kp.receiveKey, counter: counter)
        }
        guard let n else { counters.drops.badMAC += 1; return [] }
        guard kp.window.accept(counter, limit: settings.rejectAfterMessages) else { counters.drops.replay += 1; return [] }
        plain.removeLast(plain.count - n)
        let node = kp.node
        counters.packetsIn += 1
        counters.bytesIn += n
        var out: [TunnelOutput] = []
        if peers[node]!.next === kp {
            // The initiator's first packet on a new session confirms it.
            peers[node]!.next = nil
            install(kp, for: node)
            out.append(.established(node))
            out += flush(node, now: now)
        }
        arrived(node, by: source)
        peers[node]!.unansweredSince = nil
        if n == 0 {
            counters.keepalivesReceived += 1
        } else {
            if peers[node]!.keepaliveDue == nil {
                peers[node]!.keepaliveDue = now + settings.keepaliveTimeout
                schedule(now + settings.keepaliveTimeout)
            }
            out.append(.data(from: node, plain))
        }
        // An initiator's session near its end: renew before it is refused.
        if let cur = peers[node]!.current, cur === kp, kp.isInitiator, peers[node]!.pending == nil,
           now - kp.created >= settings.rejectAfterTime - settings.keepaliveTimeout - settings.rekeyTimeout {
            out += startHandshake(node, now: now)
        }
        return out
    }
}

func appendBE(_ out: inout [UInt8], _ v: UInt32) {
    out += [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
}

func appendBE(_ out: inout [UInt8], _ v: UInt64) {
    for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) }
}

func readBE32(_ d: [UInt8], _ at: Int) -> UInt32 {
    d[at..<at + 4].reduce(0) { $0 << 8 | UInt32($1) }
}

func readBE64(_ d: [UInt8], _ at: Int) -> UInt64 {
    d[at..<at + 8].reduce(0) { $0 << 8 | UInt64($1) }
}
