import MeshCore
import MeshPool
import MeshSim
import Testing

/// Leaving for good (`meshwork leave`, RELEASE) on whole nodes.
@Suite struct ReleaseScenarioTests {
    /// A member leaving for good gives its ranges to live members only. Beside a member
    /// that crashed (it holds its space until the reclaim time), a range goes to the next
    /// live owner, not to the dead one: otherwise the dead share grows with every release
    /// beside it, until the live members no longer hold a quorum and every node fences
    /// (`meshwork sim pool --nodes 40 --cycles 200 --checkpoint-every 0` left 30 nodes
    /// without an address that way).
    @Test(arguments: ScenarioTests.seeds)
    func aLeaverGivesItsSpaceToLiveMembersOnly(seed: UInt64) {
        let sim = ScenarioTests.settledMesh(6, seed: seed, reclaim: .seconds(600))
        sim.run(for: .seconds(5))
        func ownership() -> [RingView.Ownership] {
            var v = sim.poolAgent(0)!.view
            return v.ownership()
        }
        func held(_ id: NodeID) -> UInt64 { ownership().filter { $0.owner == id }.reduce(0) { $0 + $1.range.count } }
        // A member and the one whose stretch follows it (neither the first node, which
        // the test reads from).
        let own = ownership()
        var pair: (dead: Int, leaver: Int)?
        for k in 1..<own.count {
            if let a = sim.index(of: own[k - 1].owner), let b = sim.index(of: own[k].owner), a != b, a != 0, b != 0 {
                pair = (a, b)
                break
            }
        }
        guard let (dead, leaver) = pair else {
            Issue.record("seed \(seed): no two neighbouring owners besides n0")
            return
        }
        let deadID = sim.nodes[dead].id
        sim.crash(dead)
        #expect(sim.run(until: {
            let p = sim.poolAgent(leaver)!
            return !p.members.contains(deadID) || p.suspected.contains(deadID)
        }, within: .seconds(30)), "seed \(seed): n\(leaver) never noticed n\(dead) gone")
        let before = held(deadID)
        sim.leave(leaver, release: true)
        sim.run(for: .seconds(5))
        #expect(held(deadID) == before, "seed \(seed): the dead member's share grew from \(before) to \(held(deadID)) when its neighbour left")
        #expect(held(sim.nodes[leaver].id) == 0, "seed \(seed): the leaver still holds \(held(sim.nodes[leaver].id)) addresses")
        ScenarioTests.expectSafe(sim, "a release beside a dead member", seed: seed)
    }
}
