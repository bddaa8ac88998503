import MeshCore
@testable import MeshPool
import Testing

/// Balancing donations, one agent at a time (docs/pool.md, "Balance"); the scenario
/// tests check the balance itself on whole nodes.
@Suite struct BalanceTests {
    let h = History(seed: 93, nodes: 3, steps: 0)
    var id: [NodeID] { h.ids.map(\.nodeID) }

    /// A donor not bound yet never gives the address it wants for itself, even inside a
    /// larger stretch (only a stretch that was just that address was kept before).
    @Test func anUnboundDonorKeepsTheAddressItWants() {
        var agent = PoolAgent(me: id[0], view: h.makeView(), auth: h.auths[0], seq: 0, seed: 1, now: .zero)
        _ = agent.createGenesis()
        agent.setMembers([id[1]])
        #expect(agent.address == nil)
        let keep = PoolAgent.derivedAddress(for: id[0], pool: h.pool)
        var out: [PoolAgent.Output] = []
        let made = agent.donate(h.pool.count, to: id[1], limit: 16, now: .zero, &out)
        #expect(!made.isEmpty)
        #expect(made.allSatisfy { !$0.range.contains(keep) }, "gave \(made.map(\.range)) with \(IPv4Address(keep)) in it")
        #expect(made.reduce(0) { $0 + $1.range.count } == h.pool.count - 1)
    }

    /// A donation begins with the donor's stretch that touches the taker's free space, given
    /// from the touching end, rather than cutting the smallest stretch that covers it.
    @Test func aDonationGrowsTheTakersStretch() {
        // Unbound, wanting pool.first + 50: its free space is that address's two sides.
        let keep = h.pool.first + 50
        var agent = PoolAgent(me: id[0], view: h.makeView(), auth: h.auths[0], seq: 0, preferred: keep, seed: 1, now: .zero)
        _ = agent.createGenesis()
        agent.setMembers([id[1]])
        var out: [PoolAgent.Output] = []
        // 100 addresses: the top of the upper side (the lower one, 50, is too small).
        let first = agent.donate(100, to: id[1], limit: 16, now: .zero, &out)
        #expect(first.map(\.range) == [AddressRange(h.pool.last - 99, h.pool.last)])
        // 20 more: just below node 1's stretch, not the top of the smaller lower side.
        let second = agent.donate(20, to: id[1], limit: 16, now: .zero, &out)
        #expect(second.map(\.range) == [AddressRange(h.pool.last - 119, h.pool.last - 100)], "\(second.map(\.range))")
        // To node 2 (no space of its own), 56: the lower side whole (50, all but an eighth)
        // ends it; a second grant of the last 6 would be one more cut.
        agent.setMembers([id[1], id[2]])
        let third = agent.donate(56, to: id[2], limit: 16, now: .zero, &out)
        #expect(third.map(\.range) == [AddressRange(h.pool.first, keep - 1)], "\(third.map(\.range))")
    }
}
