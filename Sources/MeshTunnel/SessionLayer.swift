import MeshCore

/// The tunnel and the messenger together: what a node runs for its data plane. Message
/// fragments ride as tunnel payloads; the tunnel's session events drive the messenger
/// (a peer that restarted gets its stream started again; one that cannot be reached fails
/// what waits for it).
public struct SessionLayer: Sendable {
    public private(set) var tunnel: Tunnel
    public private(set) var messenger: Messenger
    public private(set) var relay = RelayCounters()

    /// Payload kinds besides messages (1, 2) and IP packets (high nibble 4 or 6).
    static let kindRelayRequest: UInt8 = 0x03, kindRelayed: UInt8 = 0x05
    /// The overlay-level ping (`meshwork ping`): works with or without a TUN device.
    static let kindPing: UInt8 = 0x07, kindPong: UInt8 = 0x08
    /// A pool packet (signed by its sender) carried on the session: how pool messages reach
    /// a member that is reached only through a relay.
    static let kindPool: UInt8 = 0x09

    public struct RelayCounters: Sendable, Equatable, Codable {
        /// Datagrams this node carried between two other members, and their bytes.
        public var forwarded = 0
        public var forwardedBytes = 0
        /// Relay requests refused: for a node that is not a live member, or not reached directly.
        public var refused = 0
        /// Datagrams of this node's own sessions that went through a relay, each way.
        public var sentThrough = 0
        public var receivedThrough = 0
        public init() {}
    }

    public enum Output: Sendable {
        case datagram([UInt8], to: Endpoint)
        case message(from: NodeID, [UInt8])
        case acknowledged(MessageID, to: NodeID)
        case failed(MessageID, to: NodeID, MessageFailure)
        case established(NodeID)
        /// An IP packet from a peer, as it arrived (the node checks its source).
        case packet(from: NodeID, [UInt8])
        /// The answer to `ping(_:id:now:)`.
        case pong(from: NodeID, id: UInt64)
        /// A pool packet from a peer, carried on the session (`sendPool`).
        case pool(from: NodeID, [UInt8])
    }

    public enum SendError: Error, Sendable, Equatable {
        case notAMember
        case tooLarge(limit: Int)
        case queueFull(limit: Int)
    }

    public init(tunnel: Tunnel, messenger: Messenger) {
        self.tunnel = tunnel
        self.messenger = messenger
    }

    public var nextDeadline: Instant { min(tunnel.nextDeadline, messenger.nextDeadline) }

    public mutating func setPeers(_ peers: [TunnelPeer], now: Instant) -> [Output] {
        handle(tunnel.setPeers(peers, now: now), now: now)
    }

    /// Queues a message; its acknowledgement or failure comes out later.
    public mutating func send(_ bytes: [UInt8], to peer: NodeID, deadline: Instant, now: Instant) -> (Result<MessageID, SendError>, [Output]) {
        guard tunnel.isPeer(peer) else { return (.failure(.notAMember), []) }
        let (result, out) = messenger.send(bytes, to: peer, deadline: deadline, now: now)
        switch result {
        case .success(let id): return (.success(id), handle(out, now: now))
        case .failure(.tooLarge(let l)): return (.failure(.tooLarge(limit: l)), [])
        case .failure(.queueFull(let l)): return (.failure(.queueFull(limit: l)), [])
        }
    }

    /// An IP packet for `peer`: sent on its session, or staged while one is made.
    public mutating func sendPacket(_ packet: [UInt8], to peer: NodeID, now: Instant) -> (Tunnel.SendResult, [Output]) {
        let (result, out) = tunnel.send(packet, to: peer, now: now)
        return (result, handle(out, now: now))
    }

    /// A pool packet for `peer` over its session, along the session's route (direct or
    /// through a relay); staged while a handshake (tried direct, then through relays) runs.
    public mutating func sendPool(_ packet: [UInt8], to peer: NodeID, now: Instant) -> (Tunnel.SendResult, [Output]) {
        let (result, out) = tunnel.send([Self.kindPool] + packet, to: peer, now: now)
        return (result, handle(out, now: now))
    }

    /// An overlay-level echo request to `peer` (answered by its node, not its kernel).
    public mutating func ping(_ peer: NodeID, id: UInt64, now: Instant) -> (Tunnel.SendResult, [Output]) {
        var payload = [Self.kindPing]
        appendBE(&payload, id)
        let (result, out) = tunnel.send(payload, to: peer, now: now)
        return (result, handle(out, now: now))
    }

    /// One datagram. Acknowledgements for the messages in it wait for `endOfBatch`.
    public mutating func receive(_ datagram: [UInt8], from source: Endpoint, now: Instant) -> [Output] {
        handle(tunnel.receive(datagram, from: source, now: now), now: now)
    }

    /// After a batch of datagrams read together: the acknowledgements they call for.
    public mutating func endOfBatch(now: Instant) -> [Output] {
        handle(messenger.takeAcks(), now: now)
    }

    public mutating func tick(now: Instant) -> [Output] {
        var out = handle(tunnel.tick(now: now), now: now)
        out += handle(messenger.tick(now: now), now: now)
        return out
    }

    mutating func handle(_ outputs: [TunnelOutput], now: Instant, relayed: Bool = false) -> [Output] {
        var out: [Output] = []
        for o in outputs {
            switch o {
            case .datagram(let d, let to): out.append(.datagram(d, to: to))
            case .relay(let d, let via, let to):
                // Over the session with the relay: the target, then the end-to-end datagram.
                // Only through a member reached directly (no chains, no loops).
                guard via != to, case .direct? = tunnel.route(to: via) else { relay.refused += 1; continue }
                relay.sentThrough += 1
                let (result, t) = tunnel.send([Self.kindRelayRequest] + to.key.bytes + d, to: via, now: now)
                if result != .unknownPeer { out += handle(t, now: now) }
            case .data(let from, let payload):
                // IP packets (version 4 or 6 in the high nibble) and message frames (kinds 1, 2)
                // share the session; the first byte tells them apart.
                if let first = payload.first, first >> 4 == 4 || first >> 4 == 6 {
                    out.append(.packet(from: from, payload))
                } else if payload.first == Self.kindPing, payload.count == 9 {
                    let (_, t) = tunnel.send([Self.kindPong] + payload[1...], to: from, now: now)
                    out += handle(t, now: now)
                } else if payload.first == Self.kindPong, payload.count == 9 {
                    out.append(.pong(from: from, id: readBE64(payload, 1)))
                } else if payload.first == Self.kindPool {
                    out.append(.pool(from: from, Array(payload.dropFirst())))
                } else if payload.first == Self.kindRelayRequest || payload.first == Self.kindRelayed, relayed {
                    relay.refused += 1  // relay frames inside a relayed datagram: never nested
                } else if payload.first == Self.kindRelayRequest {
                    out += forward(payload, from: from, now: now)
                } else if payload.first == Self.kindRelayed {
                    relay.receivedThrough += 1
                    out += handle(tunnel.receive(Array(payload.dropFirst()), by: .relay(from), now: now), now: now, relayed: true)
                } else {
                    out += handle(messenger.receive(payload, from: from, now: now), now: now)
                }
            case .established(let node): out.append(.established(node))
            case .failed(let node): out += handle(messenger.peerUnreachable(node), now: now)
            case .reset(let node):
                if !tunnel.isPeer(node) { out += handle(messenger.peerUnreachable(node), now: now) }
            case .restarted(let node): out += handle(messenger.peerRestarted(node, now: now), now: now)
            }
        }
        return out
    }

    /// A relay request from `from`: the datagram goes on to its target, over this node's
    /// session with it, if the target is a live member reached directly (no relay chains).
    mutating func forward(_ payload: [UInt8], from: NodeID, now: Instant) -> [Output] {
        guard payload.count > 33, let key = Bytes32(payload[1..<33]) else { relay.refused += 1; return [] }
        let target = NodeID(key)
        guard target != from, case .direct? = tunnel.route(to: target) else { relay.refused += 1; return [] }
        relay.forwarded += 1
        relay.forwardedBytes += payload.count - 33
        let (result, t) = tunnel.send([Self.kindRelayed] + payload[33...], to: target, now: now)
        if result == .unknownPeer { relay.refused += 1 }
        return handle(t, now: now)
    }

    mutating func handle(_ outputs: [MessengerOutput], now: Instant) -> [Output] {
        var out: [Output] = []
        for o in outputs {
            switch o {
            case .transmit(let payload, let to):
                let (result, t) = tunnel.send(payload, to: to, now: now)
                if result == .unknownPeer {
                    out += handle(messenger.peerUnreachable(to), now: now)
                } else {
                    out += handle(t, now: now)
                }
            case .delivered(let from, let bytes): out.append(.message(from: from, bytes))
            case .acknowledged(let id, let to): out.append(.acknowledged(id, to: to))
            case .failed(let id, let to, let why): out.append(.failed(id, to: to, why))
            }
        }
        return out
    }
}
