import MeshCore
import MeshPool
import MeshSim
import Testing

/// The pool protocol at scale on the deterministic simulator (membership from an oracle;
/// see PoolSimulation). Failure messages carry the seed.
@Suite struct PoolSimulationTests {
    static let pool = AddressRange(IPv4Address(100, 80, 0, 1).value, IPv4Address(100, 80, 255, 254).value)

    @Test(arguments: [UInt64(1), 2])
    func twoHundredNodesJoiningAtOnceWithLossGetDistinctAddresses(seed: UInt64) {
        let sim = PoolSimulation(seed: seed, pool: Self.pool, loss: 0.05)
        sim.addNode()
        sim.run(for: .milliseconds(100))
        for _ in 1..<200 { sim.addNode() }
        var everOk = true
        let ok = sim.run(until: {
            everOk = everOk && sim.duplicateAddresses().isEmpty && sim.viewsArePartitions()
            return sim.allBoundDistinct()
        }, within: .seconds(60), step: .seconds(1))
        #expect(ok, "not every node bound to a distinct address within 60s (seed \(seed)): \(sim.upNodes.filter { sim.address(of: $0) == nil }.count) unbound")
        #expect(everOk, "an invariant broke on the way (seed \(seed))")
        #expect(sim.duplicateAddresses().isEmpty)
    }

    @Test func genesisCrashAfterTwentyJoinsDoesNotStopLaterJoiners() {
        let sim = PoolSimulation(seed: 3, pool: Self.pool)
        sim.addNode()
        for _ in 1...20 {
            sim.addNode()
            sim.run(for: .milliseconds(300))
        }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(20)))
        sim.crash(0)
        for _ in 0..<20 { sim.addNode() }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(30)), "later joiners without the genesis node (seed 3)")
        #expect(sim.duplicateAddresses().isEmpty)
    }

    @Test func aPartitionWithJoinsOnBothSidesHealsWithoutDuplicates() {
        let sim = PoolSimulation(seed: 4, pool: Self.pool)
        sim.addNode()
        for _ in 1..<20 { sim.addNode() }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(20)))
        let a = Array(0..<10), b = Array(10..<20)
        sim.partition([a, b])
        for _ in 0..<20 { sim.addNode() }  // each lands on one side
        // Only the side holding a quorum grants (the other is fenced at once); its joiners
        // are served, the other side's wait for the heal.
        sim.run(for: .seconds(30))
        let served = sim.upNodes.filter { sim.address(of: $0) != nil }.count
        #expect(served > 20, "nobody was served during the partition (seed 4)")
        sim.heal()
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(60)), "joins on both sides, after the heal (seed 4)")
        sim.run(for: .seconds(30))
        #expect(sim.duplicateAddresses().isEmpty, "duplicates after heal (seed 4)")
        #expect(sim.allBoundDistinct())
        #expect(sim.viewsArePartitions())
    }

    @Test func aRestartedNodeKeepsItsAddress() {
        let sim = PoolSimulation(seed: 5, pool: Self.pool)
        sim.addNode()
        for _ in 1..<10 { sim.addNode() }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(20)))
        let before = sim.address(of: 6)
        sim.crash(6)
        sim.run(for: .seconds(5))
        sim.restart(6)
        #expect(sim.run(until: { sim.address(of: 6) != nil }, within: .seconds(10)))
        #expect(sim.address(of: 6) == before)
    }

    @Test func ownershipSpreadsOverTheMesh() {
        let sim = PoolSimulation(seed: 6, pool: Self.pool)
        sim.addNode()
        for _ in 1..<100 {
            sim.addNode()
            sim.run(for: .milliseconds(50))
        }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(30)))
        sim.run(for: .seconds(30))
        let share = sim.largestOwnerShare()
        #expect(share < 0.25, "largest owner holds \(share) of the pool after 100 joins (seed 6)")
    }

    @Test func aReleasedAddressGoesToANeighbourAndIsReused() {
        let sim = PoolSimulation(seed: 7, pool: Self.pool)
        sim.addNode()
        for _ in 1..<12 { sim.addNode() }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(20)))
        let leaver = 5
        let address = sim.address(of: leaver)!
        let id = sim.nodes[leaver].id
        sim.release(leaver)
        sim.run(for: .seconds(40))  // pushes, then a digest round
        for i in sim.upNodes {
            var v = sim.nodes[i].agent!.view
            #expect(v.leases(of: id).isEmpty, "node \(i) still sees the leaver's lease (seed 7)")
            #expect(v.owner(of: address)?.owner != id)
            #expect(v.owner(of: address)?.kind == .space)
        }
        #expect(sim.viewsArePartitions())
        #expect(sim.duplicateAddresses().isEmpty)
    }

    @Test func aFullPoolSaysSoAndLeavesNoDuplicates() {
        // A /28: 14 usable addresses for 20 nodes.
        let small = AddressRange(IPv4Address(100, 80, 0, 1).value, IPv4Address(100, 80, 0, 14).value)
        let sim = PoolSimulation(seed: 8, pool: small)
        sim.addNode()
        for _ in 1..<20 { sim.addNode() }
        sim.run(for: .seconds(30))
        let bound = sim.upNodes.filter { sim.address(of: $0) != nil }
        #expect(bound.count == 14, "all 14 addresses used, no more (seed 8): \(bound.count)")
        #expect(sim.duplicateAddresses().isEmpty)
        let waiting = sim.upNodes.filter { sim.address(of: $0) == nil }
        #expect(waiting.count == 6)
        for i in waiting {
            #expect(sim.nodes[i].exhaustedReports > 0, "node \(i) never reported the pool exhausted (seed 8)")
            #expect(sim.nodes[i].agent!.waitingReason != nil, "node \(i) waits without saying why")
            #expect(sim.nodes[i].agent!.phase != .idle || sim.nodes[i].agent!.nextDeadline < .distantFuture, "node \(i) stopped trying")
        }
    }
}

/// Reclaim and the fence on the simulator, with a reclaim time of 20 s.
@Suite struct ReclaimSimulationTests {
    static var reclaim: PoolAgent.Settings {
        var s = PoolAgent.Settings()
        s.reclaimTime = .seconds(20)
        s.leaseTime = .seconds(20)
        return s
    }

    /// Every running node's view: nothing is held by `id` any more.
    func nobodySeesHoldings(of id: NodeID, in sim: PoolSimulation) -> Bool {
        sim.upNodes.allSatisfy { i in
            var v = sim.nodes[i].agent!.view
            return !v.ownership().contains { $0.owner == id }
        }
    }

    @Test func aDeadNodesSpaceIsReclaimedAndReused() {
        // A /27: 30 usable addresses. 10 nodes join, one dies; after the reclaim time its
        // space and address pass to a successor, and 21 more nodes fill the whole pool.
        let small = AddressRange(IPv4Address(100, 80, 0, 1).value, IPv4Address(100, 80, 0, 30).value)
        let sim = PoolSimulation(seed: 11, pool: small, settings: Self.reclaim)
        sim.addNode()
        for _ in 1..<10 {
            sim.addNode()
            sim.run(for: .milliseconds(200))
        }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(20)))
        var view0 = sim.nodes[0].agent!.view
        let victim = (1..<10).max { a, b in
            view0.ownership().filter { $0.owner == sim.nodes[a].id }.reduce(0) { $0 + $1.range.count }
                < view0.ownership().filter { $0.owner == sim.nodes[b].id }.reduce(0) { $0 + $1.range.count }
        }!
        let id = sim.nodes[victim].id
        let address = sim.address(of: victim)!
        let held = view0.ownership().filter { $0.owner == id }.reduce(0) { $0 + $1.range.count }
        #expect(held > 1, "the victim should hold space besides its lease (seed 11)")
        sim.crash(victim)
        // Not before the reclaim time...
        sim.run(for: .seconds(15))
        #expect(!nobodySeesHoldings(of: id, in: sim), "reclaimed before the reclaim time (seed 11)")
        // ...but soon after it, everywhere.
        #expect(sim.run(until: { nobodySeesHoldings(of: id, in: sim) }, within: .seconds(40), step: .seconds(1)),
                "the dead node's space was not reclaimed (seed 11)")
        let reclaims = sim.upNodes.reduce(0) { $0 + sim.nodes[$1].agent!.counters.reclaims }
        #expect(reclaims >= 1)
        #expect(sim.viewsArePartitions())
        // Reused: the pool fills up completely, the dead node's address included.
        for _ in 0..<21 { sim.addNode() }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(90), step: .seconds(1)),
                "\(sim.upNodes.filter { sim.address(of: $0) == nil }.count) nodes unbound in a pool with room (seed 11)")
        #expect(sim.upNodes.contains { sim.address(of: $0) == address }, "the dead node's address was never reused (seed 11)")
        #expect(sim.duplicateAddresses().isEmpty)
    }

    @Test func aPartitionLongerThanTheReclaimTimeHealsWithoutDuplicates() {
        let sim = PoolSimulation(seed: 12, pool: PoolSimulationTests.pool, settings: Self.reclaim)
        sim.addNode()
        for _ in 1..<20 {
            sim.addNode()
            sim.run(for: .milliseconds(200))
        }
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(20)))
        // Side A holds more than half the pool, side B the rest.
        var view = sim.nodes[0].agent!.view
        let weight = { (i: Int) in view.ownership().filter { $0.owner == sim.nodes[i].id }.reduce(UInt64(0)) { $0 + $1.range.count } }
        var a: [Int] = [], b: [Int] = [], wa: UInt64 = 0
        for i in (0..<20).sorted(by: { weight($0) > weight($1) }) {
            if wa * 10 < PoolSimulationTests.pool.count * 6 { a.append(i); wa += weight(i) } else { b.append(i) }
        }
        #expect(!b.isEmpty)
        sim.partition([a, b])
        for _ in 0..<10 { sim.addNode() }  // joins on both sides
        var everOk = true
        var fencedSeen = false
        for _ in 0..<60 {  // three reclaim times
            sim.run(for: .seconds(1))
            everOk = everOk && sim.duplicateAddresses().isEmpty && sim.viewsArePartitions()
            if sim.now > .zero + .seconds(30) {
                fencedSeen = fencedSeen || b.allSatisfy { i in
                    guard sim.nodes[i].agent != nil else { return true }
                    return sim.inspect(i) { agent, now in agent.isFenced(now: now) }
                }
            }
        }
        #expect(everOk, "a duplicate inside one side, or a view that is not a partition (seed 12)")
        #expect(fencedSeen, "the minority side never stopped granting (seed 12)")
        let reclaims = a.reduce(0) { $0 + (sim.nodes[$1].agent?.counters.reclaims ?? 0) }
        #expect(reclaims > 0, "the majority side reclaimed nothing of the minority's (seed 12)")
        sim.heal()
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(90), step: .seconds(1)),
                "not all bound after heal (seed 12): \(sim.upNodes.filter { sim.address(of: $0) == nil }.count) unbound")
        sim.run(for: .seconds(30))
        #expect(sim.duplicateAddresses().isEmpty, "duplicates after heal (seed 12)")
        #expect(sim.allBoundDistinct())
        #expect(sim.viewsArePartitions())
        // The minority's leases lapsed (half the lease time without a quorum) before the
        // majority could reclaim them, and after the heal every minority node caught up
        // before it granted again: nobody was granted an address that was reclaimed, so
        // nothing conflicts.
        let count = { (f: (PoolAgent.Counters) -> Int) in sim.upNodes.reduce(0) { $0 + f(sim.nodes[$1].agent!.counters) } }
        #expect(count(\.leasesExpired) > 0, "no lease on the minority side lapsed (seed 12)")
        #expect(count(\.catchUps) > 0, "no minority node caught up after the heal (seed 12)")
        #expect(count(\.conflicts) == 0, "addresses conflicted after the heal (seed 12)")
        let b0 = b.first!
        #expect(!sim.inspect(b0) { agent, now in agent.isFenced(now: now) }, "still fenced after heal")
    }
}
