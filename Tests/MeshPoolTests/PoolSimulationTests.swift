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
        var ga = a, gb = b
        for k in 0..<20 {
            let n = sim.addNode()
            if k % 2 == 0 { ga.append(n) } else { gb.append(n) }
            sim.partition([ga, gb])
        }
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
}
