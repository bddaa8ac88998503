import MeshCore
import MeshGossip
import MeshPool
import MeshTunnel
import MeshWire

/// One node as a whole, as a sans-I/O state machine: datagrams and ticks in, datagrams
/// and events out. It composes membership (gossip) and the address pool behind the packet
/// envelope, and the data plane (sessions and messages) with the members gossip says are
/// alive, keyed by the X25519 keys in their signed records. The pool talks to the members that
/// gossip says are alive, at the endpoints their signed records give.
///
/// Receive pipeline: outer header (version, type) → open with the mesh gossip key (a
/// packet from outside the mesh stops here, counted, having changed nothing) → decode
/// strictly → the gossip state machine. Send pipeline: the reverse.
public struct MeshNode: Sendable {
    public private(set) var gossip: Gossip
    public private(set) var pool: PoolAgent?
    /// Encrypted sessions and messages with live members (nil: this node has no data plane).
    public private(set) var sessions: SessionLayer?
    var sealer: any PacketSealer
    public private(set) var counters = NodeCounters()
    public private(set) var overlay = OverlayCounters()
    /// The latest time any input brought (for work triggered by a membership change).
    var lastNow = Instant.zero

    public init(gossip: Gossip, pool: PoolAgent? = nil, sessions: SessionLayer? = nil, sealer: any PacketSealer) {
        self.gossip = gossip
        self.pool = pool
        self.sessions = sessions
        self.sealer = sealer
    }

    public var id: NodeID { gossip.me.node }
    public var nextDeadline: Instant {
        min(gossip.nextDeadline, pool?.nextDeadline ?? .distantFuture, sessions?.nextDeadline ?? .distantFuture)
    }

    /// Joins through `seeds`; with a pool, creates the genesis grant (on the genesis node)
    /// and starts acquiring an address.
    public mutating func join(seeds: [Endpoint], now: Instant) -> [NodeOutput] {
        lastNow = now
        var out = emit(gossip.join(seeds: seeds, now: now))
        if pool != nil {
            refreshPoolMembers()
            out += emitPool(pool!.createGenesis())
            out += emitPool(pool!.acquire(now: now))
        }
        return out
    }

    /// Leaves the mesh: with `release`, first gives the address and all owned space back
    /// (RELEASE); then announces the departure by gossip.
    public mutating func leave(now: Instant, release: Bool = false) -> [NodeOutput] {
        lastNow = now
        var out: [NodeOutput] = []
        if release, pool != nil { out += emitPool(pool!.release(now: now)) }
        out += emit(gossip.leave(now: now, everyone: release))
        return out
    }

    /// What the admin key must sign for `meshwork pool reclaim --force` of `target`.
    public mutating func forceReclaimPlan(_ target: NodeID) -> Result<[ForcedHolding], PoolAgent.ForceReclaimError> {
        guard pool != nil else { return .failure(.holdsNothing) }
        return pool!.forceReclaimPlan(target)
    }

    /// `meshwork pool reclaim --force`: takes over what `target` holds, without votes, on the
    /// strength of the admin key's signatures (`forceReclaimPlan`).
    public mutating func forceReclaim(_ target: NodeID, authorizations: [ForcedHolding: ReclaimVote],
                                      now: Instant) -> (Result<[AddressRange], PoolAgent.ForceReclaimError>, [NodeOutput]) {
        lastNow = now
        guard pool != nil else { return (.failure(.holdsNothing), []) }
        switch pool!.forceReclaim(target, authorizations: authorizations, now: now) {
        case .success(let (ranges, outputs)): return (.success(ranges), emitPool(outputs))
        case .failure(let e): return (.failure(e), [])
        }
    }

    /// Runs `body` on the pool agent and sends what it outputs, as this node's own code
    /// would: how the simulator scripts a member that misbehaves (an insider signing what
    /// an honest node never would), with the same sealing and routing as honest traffic.
    public mutating func withPool(now: Instant, _ body: (inout PoolAgent) -> [PoolAgent.Output]) -> [NodeOutput] {
        lastNow = now
        guard pool != nil else { return [] }
        return emitPool(body(&pool!))
    }

    public mutating func tick(now: Instant) -> [NodeOutput] {
        lastNow = now
        var out = emit(gossip.tick(now: now))
        if pool != nil { out += emitPool(pool!.tick(now: now)) }
        if sessions != nil { out += emitSessions(sessions!.tick(now: now)) }
        return out
    }

    /// An IP packet read from the TUN device: to the session of the member leasing its
    /// destination. Dropped and counted if nobody (live) holds that address.
    public mutating func routePacket(_ ip: [UInt8], now: Instant) -> [NodeOutput] {
        lastNow = now
        guard ip.count >= 20, ip[0] >> 4 == 4 else { overlay.dropsNotIPv4 += 1; return [] }
        overlay.packetsFromTun += 1
        let destination = UInt32(ip[16]) << 24 | UInt32(ip[17]) << 16 | UInt32(ip[18]) << 8 | UInt32(ip[19])
        guard sessions != nil, let holder = pool?.leaseHolder(of: destination), holder != id else {
            overlay.dropsNoRoute += 1
            return []
        }
        let (result, out) = sessions!.sendPacket(ip, to: holder, now: now)
        if result == .unknownPeer { overlay.dropsNoRoute += 1 }
        return emitSessions(out)
    }

    /// An IP packet from `from`'s session: written to TUN only if its source is the
    /// address `from` leases (no member may speak for another's address).
    mutating func acceptPacket(_ ip: [UInt8], from: NodeID) -> [NodeOutput] {
        guard ip.count >= 20, ip[0] >> 4 == 4 else { overlay.dropsNotIPv4 += 1; return [] }
        let source = UInt32(ip[12]) << 24 | UInt32(ip[13]) << 16 | UInt32(ip[14]) << 8 | UInt32(ip[15])
        guard pool?.leaseHolder(of: source) == from else { overlay.dropsSpoofed += 1; return [] }
        // Only for this node's own address: a member cannot make this host route a packet
        // on (to its other networks, when it forwards IP), and a sender with a stale view
        // (this node's lease moved) does not get its packet delivered to the wrong address.
        let destination = UInt32(ip[16]) << 24 | UInt32(ip[17]) << 16 | UInt32(ip[18]) << 8 | UInt32(ip[19])
        guard let mine = pool?.address, destination == mine else { overlay.dropsWrongDestination += 1; return [] }
        overlay.packetsToTun += 1
        return [.packet(ip)]
    }

    /// An overlay-level ping to a live member; false if it is not one.
    public mutating func ping(_ peer: NodeID, id: UInt64, now: Instant) -> (Bool, [NodeOutput]) {
        lastNow = now
        guard sessions != nil else { return (false, []) }
        let (result, out) = sessions!.ping(peer, id: id, now: now)
        return (result != .unknownPeer, emitSessions(out))
    }

    /// After a batch of datagrams read together (one socket wake-up): what the batch calls
    /// for as a whole (one acknowledgement per peer instead of one per message).
    public mutating func endOfBatch(now: Instant) -> [NodeOutput] {
        lastNow = now
        guard sessions != nil else { return [] }
        return emitSessions(sessions!.endOfBatch(now: now))
    }

    /// Queues a message for `peer` (a live member), to be acknowledged or to fail by
    /// `deadline`: `.messageAcknowledged` or `.messageFailed` with the returned ID follows.
    public mutating func sendMessage(_ bytes: [UInt8], to peer: NodeID, deadline: Instant, now: Instant)
        -> (Result<MessageID, SessionLayer.SendError>, [NodeOutput]) {
        lastNow = now
        guard sessions != nil else { return (.failure(.notAMember), []) }
        let (result, out) = sessions!.send(bytes, to: peer, deadline: deadline, now: now)
        return (result, emitSessions(out))
    }

    public mutating func updateSelf(name: String? = nil, endpoints: [Endpoint]? = nil) {
        gossip.updateSelf(name: name, endpoints: endpoints)
    }

    /// One datagram from the network. Anything malformed or not sealed for this mesh is
    /// dropped and counted by reason; it changes no state.
    public mutating func receive(datagram: [UInt8], from source: Endpoint, now: Instant) -> [NodeOutput] {
        lastNow = now
        counters.datagramsIn += 1
        counters.bytesIn += datagram.count
        var reader = WireReader(datagram)
        let header: PacketHeader
        do {
            header = try reader.read(PacketHeader.self)
        } catch {
            switch error {
            case .unsupportedVersion: counters.drops.badVersion += 1
            case .unknownType: counters.drops.unknownType += 1
            default: counters.drops.malformed += 1
            }
            return []
        }
        switch header.type {
        case .handshakeInitiation, .handshakeResponse, .transportData:
            guard sessions != nil else { counters.drops.unhandledType += 1; return [] }
            return emitSessions(sessions!.receive(datagram, from: source, now: now))
        case .gossip: break
        case .pool where pool != nil: break
        default:
            counters.drops.unhandledType += 1
            return []
        }
        let headerBytes = Array(datagram[0..<PacketHeader.size])
        guard let plain = sealer.open(datagram[PacketHeader.size...], header: headerBytes) else {
            counters.drops.notSealedForMesh += 1
            return []
        }
        if header.type == .pool {
            guard let packet = try? PoolPacket(wireBytes: plain) else {
                counters.drops.malformed += 1
                return []
            }
            return emitPool(pool!.receive(packet, now: now))
        }
        let packet: GossipPacket
        do {
            packet = try GossipPacket(wireBytes: plain)
        } catch {
            counters.drops.malformed += 1
            return []
        }
        return emit(gossip.receive(packet, from: source, now: now))
    }

    static let gossipHeader = PacketHeader(type: .gossip).wireBytes
    static let poolHeader = PacketHeader(type: .pool).wireBytes

    /// One outgoing datagram: the header, then the sealed body (header authenticated too).
    mutating func seal(_ plaintext: [UInt8], header: [UInt8]) -> [UInt8] {
        let datagram = header + sealer.seal(plaintext, header: header)
        counters.datagramsOut += 1
        counters.bytesOut += datagram.count
        return datagram
    }

    /// The data plane's peers are gossip's live members (alive or suspect) with their
    /// signed X25519 keys; a handshake from any other key is not answered.
    mutating func refreshSessionPeers() -> [NodeOutput] {
        guard sessions != nil else { return [] }
        let live = gossip.members.values
            .filter { $0.status <= .suspect && !$0.record.left && $0.record.x25519 != .zero }
            .sorted { $0.node < $1.node }
            .map { TunnelPeer(node: $0.node, staticKey: $0.record.x25519, endpoint: $0.bestEndpoint, incarnation: $0.record.incarnation) }
        return emitSessions(sessions!.setPeers(live, now: lastNow))
    }

    mutating func emitSessions(_ outputs: [SessionLayer.Output]) -> [NodeOutput] {
        var result: [NodeOutput] = []
        for o in outputs {
            switch o {
            case .datagram(let d, let to):
                counters.datagramsOut += 1
                counters.bytesOut += d.count
                result.append(.datagram(d, to: to))
            case .message(let from, let bytes): result.append(.message(from: from, bytes))
            case .acknowledged(let id, _): result.append(.messageAcknowledged(id))
            case .failed(let id, _, let why): result.append(.messageFailed(id, why))
            case .established(let node): result.append(.sessionEstablished(node))
            case .packet(let from, let ip): result += acceptPacket(ip, from: from)
            case .pong(let from, let id): result.append(.pong(from: from, id: id))
            case .pool(let from, let bytes):
                // The session proves the peer; the packet's own signature is checked as ever.
                guard pool != nil, let packet = try? PoolPacket(wireBytes: bytes), packet.sender == from else {
                    counters.drops.malformed += 1
                    continue
                }
                counters.poolReceivedOnSessions += 1
                result += emitPool(pool!.receive(packet, now: lastNow))
            }
        }
        return result
    }

    /// The pool's members are gossip's live ones (alive or suspect); suspects are named
    /// apart, as they do not count toward the fence's quorum.
    mutating func refreshPoolMembers() {
        guard pool != nil else { return }
        let live = gossip.members.values.filter { $0.status <= .suspect }
        pool!.setMembers(live.map(\.node))
        pool!.setSuspected(Set(live.filter { $0.status == .suspect }.map(\.node)))
    }

    /// A pool packet for member `to`: sealed in its own datagram to the member's endpoint,
    /// or on the session with it when the tunnel reaches it through a relay (or knows no
    /// endpoint). A `resend` (no answer to the last one) also goes on the session when no
    /// session works yet: its handshake is tried direct, then through relays, so a member
    /// out of direct reach is found (docs/pool.md, "Through relays").
    mutating func sendPool(_ packet: PoolPacket, to: NodeID, resend: Bool) -> [NodeOutput] {
        if sessions != nil, case .relay? = sessions!.tunnel.route(to: to) {
            return sendPoolOnSession(packet, to: to)
        }
        guard let endpoint = gossip.member(to)?.bestEndpoint else {
            if sessions?.tunnel.isPeer(to) == true { return sendPoolOnSession(packet, to: to) }
            counters.poolUnroutable += 1
            return []
        }
        var result: [NodeOutput] = [.datagram(seal(packet.wireBytes, header: Self.poolHeader), to: endpoint)]
        if resend, sessions != nil, sessions!.tunnel.isPeer(to), !sessions!.tunnel.hasSession(with: to, now: lastNow) {
            result += sendPoolOnSession(packet, to: to)
        }
        return result
    }

    /// A pool packet on the session with `to` (direct or through a relay, as the tunnel routes it).
    mutating func sendPoolOnSession(_ packet: PoolPacket, to: NodeID) -> [NodeOutput] {
        let (result, out) = sessions!.sendPool(packet.wireBytes, to: to, now: lastNow)
        if result == .unknownPeer {
            counters.poolUnroutable += 1
            return []
        }
        counters.poolSentOnSessions += 1
        return emitSessions(out)
    }

    mutating func emitPool(_ outputs: [PoolAgent.Output]) -> [NodeOutput] {
        var result: [NodeOutput] = []
        for o in outputs {
            switch o {
            case .send(let packet, let to):
                result += sendPool(packet, to: to, resend: false)
            case .resend(let packet, let to):
                result += sendPool(packet, to: to, resend: true)
            case .persist(let grants, let seq):
                result.append(.persist(grants: grants, seq: seq, votes: [:], checkpoint: nil))
            case .persistVote(let holding, let successor):
                result.append(.persist(grants: [], seq: 0, votes: [holding: successor], checkpoint: nil))
            case .persistCheckpoint(let cp):
                result.append(.persist(grants: [], seq: 0, votes: [:], checkpoint: cp))
            case .event(let e):
                result.append(.pool(e))
            }
        }
        return result
    }

    mutating func emit(_ outputs: [GossipOutput]) -> [NodeOutput] {
        var result: [NodeOutput] = []
        result.reserveCapacity(outputs.count)
        var membershipChanged = false
        var membersGained = false
        var recordsChanged = false
        for o in outputs {
            if case .event(let e) = o {
                switch e {
                case .joined, .recovered:
                    membershipChanged = true
                    membersGained = true
                case .died, .left, .forgotten, .suspected: membershipChanged = true
                case .updated: recordsChanged = true
                default: break
                }
            }
            switch o {
            case .send(let packet, let to):
                result.append(.datagram(seal(packet.wireBytes, header: Self.gossipHeader), to: to))
            case .event(let e):
                result.append(.event(e))
            }
        }
        // Not in a `defer`: what a defer appends to `result` is lost, as the value returned
        // is taken before it runs (these outputs were once lost that way).
        if membershipChanged, pool != nil {
            refreshPoolMembers()
            // A node still without an address retries as soon as someone appears (not when
            // someone goes: that would undo its backoff in a churning mesh).
            if membersGained { result += emitPool(pool!.retryNow(now: lastNow)) }
        }
        if membershipChanged || recordsChanged { result += refreshSessionPeers() }
        return result
    }
}

public enum NodeOutput: Sendable {
    case datagram([UInt8], to: Endpoint)
    case event(MembershipEvent)
    /// Make these grants, this grant sequence number and these reclaim votes (holding →
    /// successor) durable before acting on any later output; with a checkpoint, the view
    /// moved onto it: keep it, and drop the grants inside its cut (compaction).
    case persist(grants: [Grant], seq: UInt64, votes: [Bytes32: NodeID], checkpoint: PoolCheckpoint?)
    case pool(PoolEvent)
    /// A whole message from a member, in order, once.
    case message(from: NodeID, [UInt8])
    case messageAcknowledged(MessageID)
    case messageFailed(MessageID, MessageFailure)
    case sessionEstablished(NodeID)
    /// An IP packet for the TUN device.
    case packet([UInt8])
    /// A member answered an overlay-level ping.
    case pong(from: NodeID, id: UInt64)
}

/// The overlay's packet counters.
public struct OverlayCounters: Sendable, Equatable, Codable {
    public var packetsFromTun = 0
    public var packetsToTun = 0
    /// For an address no live member leases.
    public var dropsNoRoute = 0
    /// From a member, with a source address that member does not lease.
    public var dropsSpoofed = 0
    /// Not IPv4 (the overlay carries IPv4 today).
    public var dropsNotIPv4 = 0
    /// From a member, for an address that is not this node's lease.
    public var dropsWrongDestination = 0
    public init() {}
}

public struct NodeCounters: Sendable, Equatable, Codable {
    public struct Drops: Sendable, Equatable, Codable {
        /// Failed the AEAD check: from outside the mesh, forged, or altered.
        public var notSealedForMesh = 0
        public var malformed = 0
        public var badVersion = 0
        public var unknownType = 0
        /// A known type this build does not handle yet.
        public var unhandledType = 0
        public init() {}
        public var total: Int { notSealedForMesh + malformed + badVersion + unknownType + unhandledType }
    }

    public var datagramsIn = 0
    public var datagramsOut = 0
    public var bytesIn = 0
    public var bytesOut = 0
    public var drops = Drops()
    /// Pool messages for members whose endpoint is not known (yet).
    public var poolUnroutable = 0
    /// Pool packets sent and received on a session rather than as their own datagrams: to
    /// and from members reached through a relay, or asked again after no answer.
    public var poolSentOnSessions = 0, poolReceivedOnSessions = 0
    public init() {}
}
