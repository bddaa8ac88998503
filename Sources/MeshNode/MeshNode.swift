import MeshCore
import MeshGossip
import MeshWire

/// One node as a whole, as a sans-I/O state machine: datagrams and ticks in, datagrams
/// and events out. Today it is membership (gossip) behind the packet envelope; the address
/// pool and the tunnel join it here in later issues.
///
/// Receive pipeline: outer header (version, type) → open with the mesh gossip key (a
/// packet from outside the mesh stops here, counted, having changed nothing) → decode
/// strictly → the gossip state machine. Send pipeline: the reverse.
public struct MeshNode: Sendable {
    public private(set) var gossip: Gossip
    var sealer: any PacketSealer
    public private(set) var counters = NodeCounters()

    public init(gossip: Gossip, sealer: any PacketSealer) {
        self.gossip = gossip
        self.sealer = sealer
    }

    public var id: NodeID { gossip.me.node }
    public var nextDeadline: Instant { gossip.nextDeadline }

    public mutating func join(seeds: [Endpoint], now: Instant) -> [NodeOutput] {
        emit(gossip.join(seeds: seeds, now: now))
    }

    public mutating func leave(now: Instant) -> [NodeOutput] {
        emit(gossip.leave(now: now))
    }

    public mutating func tick(now: Instant) -> [NodeOutput] {
        emit(gossip.tick(now: now))
    }

    public mutating func updateSelf(name: String? = nil, endpoints: [Endpoint]? = nil) {
        gossip.updateSelf(name: name, endpoints: endpoints)
    }

    /// One datagram from the network. Anything malformed or not sealed for this mesh is
    /// dropped and counted by reason; it changes no state.
    public mutating func receive(datagram: [UInt8], from source: Endpoint, now: Instant) -> [NodeOutput] {
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
        guard header.type == .gossip else {
            counters.drops.unhandledType += 1
            return []
        }
        let headerBytes = Array(datagram[0..<PacketHeader.size])
        guard let plain = sealer.open(datagram[PacketHeader.size...], header: headerBytes) else {
            counters.drops.notSealedForMesh += 1
            return []
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

    mutating func emit(_ outputs: [GossipOutput]) -> [NodeOutput] {
        var result: [NodeOutput] = []
        result.reserveCapacity(outputs.count)
        let header = PacketHeader(type: .gossip).wireBytes
        for o in outputs {
            switch o {
            case .send(let packet, let to):
                let body = sealer.seal(packet.wireBytes, header: header)
                let datagram = header + body
                counters.datagramsOut += 1
                counters.bytesOut += datagram.count
                result.append(.datagram(datagram, to: to))
            case .event(let e):
                result.append(.event(e))
            }
        }
        return result
    }
}

public enum NodeOutput: Sendable {
    case datagram([UInt8], to: Endpoint)
    case event(MembershipEvent)
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
    public init() {}
}
