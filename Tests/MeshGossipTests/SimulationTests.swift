import MeshCore
import MeshGossip
import MeshSim
import Testing

/// Simulator scenarios at small N with asserted bounds. Every failure message names the
/// seed, so the run can be replayed exactly.
@Suite struct SimulationTests {
    func mesh(_ n: Int, seed: UInt64, loss: Double = 0, realCrypto: Bool = false) -> Simulation {
        let sim = Simulation(seed: seed, network: .init(loss: loss), realCrypto: realCrypto)
        sim.addNode()
        for i in 1..<n {
            sim.schedule(at: sim.now + .milliseconds(Int64(i) * 50)) { sim.addNode(joinVia: [Int(UInt64(i) * 7919 % UInt64(i))]) }
        }
        return sim
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func joinConverges(seed: UInt64) {
        let sim = mesh(30, seed: seed)
        sim.run(for: .seconds(2))
        let ok = sim.run(until: { sim.nodes.count == 30 && sim.converged() }, within: .seconds(20))
        #expect(ok, "30 nodes did not converge within 20s (seed \(seed))")
    }

    /// A joiner whose join datagrams to its seed were lost, and a later joiner that went
    /// through it: the two know each other, but neither knows the mesh. The first keeps
    /// trying its seed until the seed answers, so the island merges into the mesh.
    @Test(arguments: [UInt64(1), 2, 3])
    func joinersCutOffFromTheirSeedDoNotStayAnIsland(seed: UInt64) {
        let sim = mesh(5, seed: seed)
        #expect(sim.run(until: { sim.nodes.count == 5 && sim.converged() }, within: .seconds(20)), "seed \(seed)")
        // a's seed, node 4, is down when a joins through it: a's join datagrams are lost.
        sim.crash(4)
        let a = sim.addNode(joinVia: [4])
        sim.run(for: .milliseconds(200))
        let b = sim.addNode(joinVia: [a])
        #expect(sim.run(until: { sim.status(of: b, seenBy: a) == .alive }, within: .seconds(5)), "seed \(seed): b did not join through a")
        sim.restart(4, joinVia: [0])
        // Nobody in the mesh knows a or b; only a's seed, tried again, can join them up.
        #expect(sim.run(until: { sim.converged() }, within: .seconds(60)), "seed \(seed): the island \(a), \(b) never met the mesh")
    }

    @Test(arguments: [UInt64(4), 5])
    func crashIsDetectedByAll(seed: UInt64) {
        let sim = mesh(25, seed: seed)
        #expect(sim.run(until: { sim.nodes.count == 25 && sim.converged() }, within: .seconds(30)), "seed \(seed)")
        let victim = 13
        sim.crash(victim)
        let t0 = sim.now
        let ok = sim.run(until: { sim.upNodes.allSatisfy { sim.status(of: victim, seenBy: $0) == .dead } }, within: .seconds(20))
        #expect(ok, "crash not declared dead by all within 20s (seed \(seed))")
        #expect(sim.now - t0 < .seconds(15), "took \(sim.now - t0) (seed \(seed))")
        // And it comes back after a restart.
        sim.restart(victim, joinVia: [0])
        #expect(sim.run(until: { sim.converged() }, within: .seconds(10)), "restart not seen alive by all (seed \(seed))")
    }

    @Test func gracefulLeaveIsSeenAsLeft() {
        let sim = mesh(10, seed: 6)
        #expect(sim.run(until: { sim.nodes.count == 10 && sim.converged() }, within: .seconds(20)))
        sim.leave(4)
        #expect(sim.run(until: { sim.upNodes.allSatisfy { sim.status(of: 4, seenBy: $0) == .left } }, within: .seconds(5)))
    }

    @Test(arguments: [UInt64(7), 8])
    func partitionAndHeal(seed: UInt64) {
        let sim = mesh(20, seed: seed)
        #expect(sim.run(until: { sim.nodes.count == 20 && sim.converged() }, within: .seconds(20)), "seed \(seed)")
        let a = Array(0..<10), b = Array(10..<20)
        sim.partition([a, b])
        let split = sim.run(until: {
            a.allSatisfy { i in b.allSatisfy { sim.status(of: $0, seenBy: i) == .dead } }
                && b.allSatisfy { i in a.allSatisfy { sim.status(of: $0, seenBy: i) == .dead } }
        }, within: .seconds(60))
        #expect(split, "the halves did not declare each other dead (seed \(seed))")
        sim.heal()
        #expect(sim.run(until: { sim.converged() }, within: .seconds(120)), "did not re-merge within 120s of healing (seed \(seed))")
    }

    @Test func noFalseDeathsAtFivePercentLoss() {
        var falseDeaths = 0
        let sim = mesh(30, seed: 9, loss: 0.05)
        sim.observer = { _, _, e in if case .died = e { falseDeaths += 1 } }
        #expect(sim.run(until: { sim.nodes.count == 30 && sim.allKnown() }, within: .seconds(30)))
        sim.run(for: .seconds(600))
        #expect(falseDeaths == 0, "\(falseDeaths) false deaths in 10 minutes at 5% loss (seed 9)")
        #expect(sim.allKnown())
    }

    @Test func realCryptoMeshConverges() {
        let sim = mesh(6, seed: 10, realCrypto: true)
        #expect(sim.run(until: { sim.nodes.count == 6 && sim.converged() }, within: .seconds(10)))
    }

    /// The same seed gives the same run, event for event.
    @Test func runsReplayFromTheirSeed() {
        func trace(_ seed: UInt64) -> [String] {
            var events: [String] = []
            let sim = mesh(15, seed: seed, loss: 0.05)
            sim.observer = { t, i, e in events.append("\(t.nanoseconds) \(i) \(e)") }
            sim.run(for: .seconds(10))
            sim.crash(3)
            sim.run(for: .seconds(20))
            return events + ["\(sim.eventsProcessed) \(sim.datagramsSent) \(sim.datagramsLost)"]
        }
        let a = trace(11), b = trace(11), c = trace(12)
        #expect(a == b)
        #expect(a != c)
    }
}
