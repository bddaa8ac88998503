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
        #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(30)), "joins on both sides (seed 4)")
        sim.heal()
        sim.run(for: .seconds(60))
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
