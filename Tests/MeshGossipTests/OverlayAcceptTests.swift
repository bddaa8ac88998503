import MeshCore
import MeshCrypto
@testable import MeshNode
import MeshPool
import Testing

/// What a node writes to its TUN device: only packets from a member's own leased source,
/// to this node's own leased address.
@Suite struct OverlayAcceptTests {
    /// Node B (genesis of a small pool) leases itself `mine` and member A `theirs`.
    static func node() -> (node: MeshNode, a: NodeID, mine: UInt32, theirs: UInt32) {
        let (g, id) = Fixture.gossip(2)
        let auth = Ed25519RecordAuthenticator(identity: id)
        let pool = AddressRange(IPv4Address(100, 64, 0, 1).value, IPv4Address(100, 64, 0, 254).value)
        let a = Fixture.identity(900).nodeID
        let mine = IPv4Address(100, 64, 0, 10).value, theirs = IPv4Address(100, 64, 0, 20).value
        var view = RingView(pool: pool, genesis: id.nodeID, auth: auth)
        var gen = Grant(grantor: id.nodeID, seq: 0, parent: .zero, range: pool, grantee: id.nodeID, kind: .space)
        gen.sign(with: auth)
        var own = Grant(grantor: id.nodeID, seq: 1, parent: gen.ref, range: AddressRange(mine, mine), grantee: id.nodeID, kind: .lease)
        own.sign(with: auth)
        var other = Grant(grantor: id.nodeID, seq: 2, parent: gen.ref, range: AddressRange(theirs, theirs), grantee: a, kind: .lease)
        other.sign(with: auth)
        for grant in [gen, own, other] { view.insert(grant) }
        var agent = PoolAgent(me: id.nodeID, view: view, auth: auth, seq: 2, seed: 1, now: .zero)
        _ = agent.acquire(now: .zero)  // binds the lease it holds
        return (MeshNode(gossip: g, pool: agent, sealer: GossipSealer(secret: try! MeshSecret(bytes: [UInt8](repeating: 7, count: 32)))), a, mine, theirs)
    }

    /// A minimal IPv4 header (20 bytes) and 8 bytes of payload.
    static func packet(from source: UInt32, to destination: UInt32) -> [UInt8] {
        var p = [UInt8](repeating: 0, count: 28)
        p[0] = 0x45
        p[3] = 28
        p[9] = 1
        for k in 0..<4 {
            p[12 + k] = UInt8(truncatingIfNeeded: source >> (24 - 8 * k))
            p[16 + k] = UInt8(truncatingIfNeeded: destination >> (24 - 8 * k))
        }
        return p
    }

    @Test func onlyPacketsFromTheSendersLeaseToThisNodesLeaseReachTheDevice() {
        var (n, a, mine, theirs) = Self.node()
        #expect(n.pool?.address == mine)
        let good = n.acceptPacket(Self.packet(from: theirs, to: mine), from: a)
        #expect(good.count == 1)
        if case .packet(let ip)? = good.first { #expect(ip == Self.packet(from: theirs, to: mine)) } else { Issue.record("no packet out: \(good)") }

        // To an address that is not this node's: another member's, an unleased one, outside the pool.
        for destination in [theirs, IPv4Address(100, 64, 0, 99).value, IPv4Address(10, 0, 0, 1).value] {
            #expect(n.acceptPacket(Self.packet(from: theirs, to: destination), from: a).isEmpty)
        }
        #expect(n.overlay.dropsWrongDestination == 3)

        // From an address the sender does not lease: spoofed, whatever the destination.
        #expect(n.acceptPacket(Self.packet(from: mine, to: mine), from: a).isEmpty)
        #expect(n.overlay.dropsSpoofed == 1)
        #expect(n.overlay.packetsToTun == 1)
    }
}
