import MeshCore
import MeshCrypto
@testable import MeshPool
import MeshSim
import Testing

/// `RingView` keeps its fold current grant by grant, and `voteHoldings` folds again only
/// the subtrees a rewind changes; their definitions are one whole fold (`fold(skipping:)`,
/// `voteHoldingsByWholeFold`). Every node must compute the same owners and weights from
/// the same grants, so the two must agree exactly, on any view and any votes.
@Suite struct VoteHoldingsTests {
    /// Random signed histories (with conflicting grants), random voters at random seqs.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func theLocalRefoldIsTheWholeRewoundFold(seed: UInt64) {
        let h = History(seed: seed, nodes: 6, steps: 120)
        var view = h.view(of: h.grants)
        var rng = SeededRandom(seed: seed ^ 0x707e)
        for _ in 0..<40 {
            let votes = Self.randomVotes(view: view, voters: h.ids.map(\.nodeID), rng: &rng)
            Self.expectSame(&view, votes, "seed \(seed)")
        }
    }

    /// The fold kept current as grants arrive (`RingView.noteAttached`: only the subtrees
    /// of parents that gained children are folded again) is the whole fold, in any order of
    /// arrival (orphans attaching later included), read after every grant or every few.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func theFoldKeptCurrentIsTheWholeFold(seed: UInt64) {
        let h = History(seed: seed, nodes: 6, steps: 120)
        #expect(h.grants.contains { $0.kind == .merge }, "seed \(seed): the history has no merge to check")
        var rng = SeededRandom(seed: seed ^ 0xf01d)
        var order = h.grants
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var view = h.makeView()
        let every = 1 + Int(seed % 4)
        for (k, g) in order.enumerated() {
            view.insert(g)
            // Read the fold every few grants, so that the next ones update a cached fold.
            guard k % every == 0 else { continue }
            #expect(view.ownership() == view.fold(skipping: nil), "seed \(seed): after \(k + 1) grants")
        }
        #expect(view.ownership() == view.fold(skipping: nil), "seed \(seed): at the end")
    }

    /// Views of whole simulated nodes after 40% of a mesh died and was reclaimed: many
    /// reclaims (which a rewind may leave out), grants made after votes, released leases.
    @Test(arguments: [UInt64(1), 2, 3])
    func theLocalRefoldIsTheWholeRewoundFoldAfterAReclaimWave(seed: UInt64) {
        var rng = SeededRandom(seed: seed ^ 0xfade)
        var reclaims = 0
        for var view in Self.viewsAfterAReclaimWave(seed: seed) {
            #expect(view.ownership() == view.fold(skipping: nil), "seed \(seed): the kept fold is not the whole fold")
            let voters = Array(Set(view.grants.values.map(\.grantor)))
            for g in view.grants.values where g.kind == .reclaim {
                reclaims += 1
                Self.expectSame(&view, g.votes, "seed \(seed), the votes of a reclaim")
            }
            for _ in 0..<20 {
                Self.expectSame(&view, Self.randomVotes(view: view, voters: voters, rng: &rng), "seed \(seed)")
            }
        }
        #expect(reclaims > 0, "seed \(seed): the wave made no reclaims to check")
    }

    /// The views of the running nodes of a simulated mesh of 12 whole nodes, settled, 5 of
    /// them killed, 3 joined, 60 s on (reclaim and lease time 20 s; no checkpoints).
    static func viewsAfterAReclaimWave(seed: UInt64) -> [RingView] {
        var s = PoolAgent.Settings()
        s.reclaimTime = .seconds(20)
        s.leaseTime = .seconds(20)
        s.checkpointEvery = 0  // whole histories: the tests compare checkpoints against them
        let pool = AddressRange(IPv4Address(100, 80, 0, 1).value, IPv4Address(100, 80, 3, 254).value)
        let sim = Simulation(seed: seed, pool: pool, poolSettings: s)
        sim.addNode()
        for k in 1..<12 {
            sim.addNode(joinVia: [k - 1])
            sim.run(for: .milliseconds(300))
        }
        #expect(sim.run(until: { sim.allBoundDistinct() && sim.allKnown() }, within: .seconds(60)), "seed \(seed): did not settle")
        for i in [2, 5, 7, 9, 10] { sim.crash(i) }
        for _ in 0..<3 { sim.addNode(joinVia: [0]) }
        sim.run(for: .seconds(60))
        return sim.upNodes.compactMap { sim.poolAgent($0)?.view }
    }

    static func randomVotes(view: RingView, voters: [NodeID], rng: inout SeededRandom) -> [ReclaimVote] {
        var votes: [ReclaimVote] = []
        for v in voters where rng.next() % 2 == 0 {
            let top = view.byGrantor[v]?.contiguousSeq ?? 0
            votes.append(ReclaimVote(signer: v, seq: rng.next() % (top + 1)))
        }
        return votes
    }

    static func expectSame(_ view: inout RingView, _ votes: [ReclaimVote], _ what: String) {
        guard case .success(let fast) = view.voteHoldings(votes) else {
            Issue.record("\(what): history incomplete for votes within the contiguous seqs")
            return
        }
        let whole = view.voteHoldingsByWholeFold(votes)
        #expect(fast.filter { !$0.value.isEmpty } == whole.filter { !$0.value.isEmpty }, "\(what): votes \(votes.map { "\($0.signer.fingerprint)@\($0.seq)" })")
    }
}
