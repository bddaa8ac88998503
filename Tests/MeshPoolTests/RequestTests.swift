import MeshCore
import MeshCrypto
import MeshPool
import Testing

/// Every pool request proves its sender: signed by the sender's key, served only for live
/// members, one lease per member, and offers taken only from the members asked.
@Suite struct RequestTests {
    let h = History(seed: 91, nodes: 4, steps: 0)
    var id: [NodeID] { h.ids.map(\.nodeID) }

    /// The genesis node (node 0) owning the whole pool, with node 1 a live member.
    func genesisAgent() -> PoolAgent {
        var agent = PoolAgent(me: id[0], view: h.makeView(), auth: h.auths[0], seq: 0, seed: 1, now: .zero)
        _ = agent.createGenesis()
        _ = agent.acquire(now: .zero)
        agent.setMembers([id[1]])
        return agent
    }

    func packet(_ m: PoolMessage, from i: Int, signedBy j: Int? = nil) -> PoolPacket {
        var p = PoolPacket(sender: id[i], message: m)
        p.signature = h.auths[j ?? i].sign(p.signedBytes)
        return p
    }

    func offers(_ out: [PoolAgent.Output]) -> Int {
        out.filter { if case .send(let p, _) = $0, case .offer = p.message { return true } else { return false } }.count
    }

    @Test func requestsInAnothersNameOrFromNonMembersAreRefusedAndCounted() {
        var agent = genesisAgent()
        let t = Instant.zero + .seconds(1)
        // As reported: DISCOVER under a made-up ID (node 3's, signed by node 2's key).
        #expect(agent.receive(packet(.discover(xid: 1, requested: nil), from: 3, signedBy: 2), now: t).isEmpty)
        #expect(agent.counters.badPacketSignatures == 1)
        // Properly signed, by a key that is no live member: refused, counted, nothing held.
        #expect(agent.receive(packet(.discover(xid: 2, requested: nil), from: 2), now: t).isEmpty)
        #expect(agent.receive(packet(.request(xid: 2, address: h.pool.first + 7), from: 2), now: t).isEmpty)
        #expect(agent.counters.refusedNonMembers == 2)
        // A live member is served.
        let served = agent.receive(packet(.discover(xid: 3, requested: nil), from: 1), now: t)
        #expect(offers(served) == 1)
    }

    @Test func aMemberHoldsAtMostOneLease() {
        var agent = genesisAgent()
        var t = Instant.zero + .seconds(1)
        func offered(_ out: [PoolAgent.Output]) -> UInt32? {
            for o in out { if case .send(let p, _) = o, case .offer(_, let a, _, _) = p.message { return a } }
            return nil
        }
        let a = offered(agent.receive(packet(.discover(xid: 1, requested: nil), from: 1), now: t))!
        _ = agent.receive(packet(.request(xid: 1, address: a), from: 1), now: t)
        var first = agent.view
        #expect(!first.leases(of: id[1]).isEmpty)
        // Asking again gets the same address back (sticky), never a second one.
        t = t + .seconds(1)
        #expect(offered(agent.receive(packet(.discover(xid: 2, requested: a + 1), from: 1), now: t)) == a)
        let second = agent.receive(packet(.request(xid: 2, address: a + 1), from: 1), now: t)
        #expect(second.contains { if case .send(let p, _) = $0, case .nak = p.message { return true } else { return false } })
        #expect(agent.counters.refusedSecondLease == 1)
        var v = agent.view
        #expect(v.leases(of: id[1]).count == 1)
    }

    /// An offer is held per client: asking again with a new transaction ID replaces the
    /// hold rather than reserving more space.
    @Test func offersAreHeldPerClient() {
        var agent = genesisAgent()
        let t = Instant.zero + .seconds(1)
        var shares = Set<AddressRange>()
        for x in UInt32(1)...20 {
            for o in agent.receive(packet(.discover(xid: x, requested: nil), from: 1), now: t) {
                if case .send(let p, _) = o, case .offer(_, _, let s?, _) = p.message { shares.insert(s) }
            }
        }
        #expect(shares.count == 1, "twenty DISCOVERs from one member reserved \(shares.count) shares")
    }
}
