import MeshCore
import MeshPool
import MeshSim
import Testing

/// The allocator's promises, tested on whole nodes (gossip, pool and the glue between them)
/// in the deterministic simulator. Every scenario runs over several seeds; a failure names
/// its seed, and rerunning that seed replays it exactly.
@Suite struct ScenarioTests {
    static let pool24 = AddressRange(IPv4Address(100, 64, 0, 1).value, IPv4Address(100, 64, 0, 254).value)
    static let seeds: [UInt64] = [1, 2, 3, 4, 5]

    static let pool16 = AddressRange(IPv4Address(100, 64, 0, 1).value, IPv4Address(100, 64, 255, 254).value)

    static func settings(reclaim: Span = .seconds(20), lease: Span? = nil) -> PoolAgent.Settings {
        var s = PoolAgent.Settings()
        s.reclaimTime = reclaim
        s.leaseTime = lease ?? reclaim
        return s
    }

    /// A mesh of `n` nodes, each joining through a running node, all holding distinct addresses.
    static func settledMesh(_ n: Int, seed: UInt64, pool: AddressRange = pool24, reclaim: Span = .seconds(20), lease: Span? = nil,
                            realCrypto: Bool = false, loss: Double = 0, tweak: (inout PoolAgent.Settings) -> Void = { _ in }) -> Simulation {
        var s = settings(reclaim: reclaim, lease: lease)
        tweak(&s)
        let sim = Simulation(seed: seed, network: SimNetwork(loss: loss), realCrypto: realCrypto, pool: pool, poolSettings: s)
        sim.addNode()
        for k in 1..<n {
            sim.addNode(joinVia: [k - 1 - Int(sim.nodes.count % max(1, min(k, 3)))])
            sim.run(for: .milliseconds(n > 50 ? 50 : 300))
        }
        #expect(sim.run(until: { sim.allBoundDistinct() && sim.allKnown() }, within: .seconds(60)), "seed \(seed): mesh of \(n) did not settle")
        return sim
    }

    /// No two running nodes ever held one address, no acknowledged lease was lost, and
    /// every running node holds a distinct address now.
    static func expectSafe(_ sim: Simulation, _ what: String, seed: UInt64, lostAllowed: Int = 0) {
        #expect(sim.duplicateAddresses.isEmpty, "seed \(seed), \(what): an address was taken while held: \(sim.duplicateAddresses.map { "\(IPv4Address($0.1)) by n\($0.3) from n\($0.2)" })")
        #expect(sim.leasesLost <= lostAllowed, "seed \(seed), \(what): \(sim.leasesLost) acknowledged leases lost")
        #expect(sim.duplicateHolders().isEmpty, "seed \(seed), \(what): duplicates now: \(sim.duplicateHolders())")
    }

    /// The largest share of the pool a running node holds, as that node's own view says
    /// (views of others' holdings may lag by an anti-entropy round; one's own does not).
    static func largestShare(_ sim: Simulation) -> Double {
        sim.upNodes.map { sim.shares(seenBy: $0)[sim.nodes[$0].id] ?? 0 }.max() ?? 0
    }

    @Test(arguments: seeds)
    func killTheLargestOwnerOfThreeThenJoinAFourth(seed: UInt64) {
        let sim = Self.settledMesh(3, seed: seed)
        // Shares are balanced promptly: none holds more than 1.5/N.
        #expect(sim.run(until: { Self.largestShare(sim) <= 1.5 / 3 }, within: .seconds(10)),
                "seed \(seed): largest share \(Self.largestShare(sim)) > 1.5/3")
        let shares = sim.shares(seenBy: 1)
        let largest = shares.max { $0.value < $1.value }!.key
        let victim = sim.index(of: largest)!
        sim.crash(victim)
        let survivor = sim.upNodes.first!
        let killedAt = sim.now
        // Past half the reclaim time: a survivor cut off from most of the pool is fenced by now.
        sim.run(for: .seconds(15))
        let joiner = sim.addNode(joinVia: [survivor])
        let deadline = killedAt + .seconds(20 + 10)
        #expect(sim.run(until: { sim.address(of: joiner) != nil }, within: deadline - sim.now),
                "seed \(seed): the fourth node has no address \(sim.now - killedAt) after the largest owner died")
        // As the report had it: a node joining 50 s after the death.
        sim.run(until: killedAt + .seconds(50))
        let late = sim.addNode(joinVia: [survivor])
        #expect(sim.run(until: { sim.address(of: late) != nil }, within: .seconds(10)),
                "seed \(seed): a node joining 50 s after the death has no address 10 s later")
        #expect(sim.allBoundDistinct())
        #expect(sim.duplicateAddresses.isEmpty)
        #expect(sim.leasesLost == 0)
    }

    /// Kill a random 40% of a settled mesh, then join more: every joiner gets an address
    /// within the reclaim time plus 10 s, and no address is ever held twice.
    @Test(arguments: [(9, UInt64(1)), (9, 2), (9, 3), (9, 4), (9, 5)])
    func killFortyPercentThenJoinMore(n: Int, seed: UInt64) {
        let sim = Self.settledMesh(n, seed: seed, pool: n > 50 ? Self.pool16 : Self.pool24)
        #expect(sim.run(until: { Self.largestShare(sim) <= 1.5 / Double(n) }, within: .seconds(10)),
                "seed \(seed): largest share \(Self.largestShare(sim)) > 1.5/\(n) 10 s after the last join")
        var rng = SeededRandom(seed: seed)
        var victims = Set<Int>()
        while victims.count < n * 4 / 10 { victims.insert(Int(rng.next() % UInt64(n))) }
        for v in victims.sorted() { sim.crash(v) }
        let killedAt = sim.now
        let survivor = sim.upNodes.first!
        sim.run(for: .seconds(12))  // past half the reclaim time
        let joiners = (0..<3).map { _ in sim.addNode(joinVia: [survivor]) }
        #expect(sim.run(until: { joiners.allSatisfy { sim.address(of: $0) != nil } }, within: killedAt + .seconds(30) - sim.now),
                "seed \(seed): joiners without an address \(sim.now - killedAt) after 40% of \(n) died")
        sim.run(until: killedAt + .seconds(45))
        #expect(sim.run(until: { Self.largestShare(sim) <= 1.5 / Double(sim.upNodes.count) }, within: .seconds(10)),
                "seed \(seed): largest share \(Self.largestShare(sim)) after the deaths were reclaimed")
        Self.expectSafe(sim, "kill 40% of \(n)", seed: seed)
        // The survivors hold a quorum: no running node was fenced long enough to lapse.
        let lapsed = sim.upNodes.filter { (sim.poolAgent($0)?.counters.leasesExpired ?? 0) > 0 }
        #expect(lapsed.isEmpty, "seed \(seed): leases lapsed on \(lapsed)")
    }

    /// A partition longer than the reclaim time, with joins on both sides, then heal: the
    /// majority reclaims the minority's space, the minority grants nothing meanwhile, and
    /// after the heal every node holds a distinct address, none lost.
    @Test(arguments: seeds)
    func aPartitionLongerThanTheReclaimTimeWithJoinsOnBothSides(seed: UInt64) {
        // Leases outlast the partition (DHCP's lease time), space does not.
        let sim = Self.settledMesh(9, seed: seed, lease: .seconds(300))
        sim.run(for: .seconds(10))
        let order = sim.upNodes.shuffledDeterministically(seed: seed)
        let (a, b) = (Array(order.prefix(5)), Array(order.suffix(4)))
        sim.partition([a, b])
        // The minority side stops granting once membership no longer sees a quorum alive
        // (docs/pool.md: grants in the seconds before that may be renumbered on heal).
        // Across a partition every probe of the other side fails with no nack, so Lifeguard
        // stretches each node's probe interval up to 8 s; a member of the other side last
        // in every minority node's probe order is suspected only 25 s or more after the
        // split (seed 1 after the pool's orphan pull changed the run: 26 s).
        #expect(sim.run(until: { b.allSatisfy { var p = sim.poolAgent($0)!; return p.isFenced(now: sim.now) } }, within: .seconds(60)),
                "seed \(seed): the minority side never fenced")
        let joinA = sim.addNode(joinVia: [a[0]]), joinB = sim.addNode(joinVia: [b[0]])
        sim.partition([a + [joinA], b + [joinB]])
        #expect(sim.run(until: { sim.address(of: joinA) != nil }, within: .seconds(5)), "seed \(seed): no address on the majority side")
        sim.run(for: .seconds(60))  // three reclaim times
        #expect(sim.address(of: joinB) == nil, "seed \(seed): the minority side granted an address")
        // Nor did it start reclaims that its votes could never carry (it signs its own vote
        // as it starts one): docs/pool.md, "The fence".
        let minorityVotes = (b + [joinB]).map { sim.poolAgent($0)!.counters.votes }
        #expect(minorityVotes.allSatisfy { $0 == 0 }, "seed \(seed): the minority side voted: \(minorityVotes)")
        let reclaims = (a + [joinA]).reduce(0) { $0 + sim.nodes[$1].poolLog.reclaims }
        #expect(reclaims > 0, "seed \(seed): the majority reclaimed none of the minority's space")
        sim.heal()
        #expect(sim.run(until: { sim.allBoundDistinct() && sim.allKnown() }, within: .seconds(30)), "seed \(seed): not all bound after heal")
        sim.run(for: .seconds(10))
        Self.expectSafe(sim, "partition", seed: seed)
    }

    /// The genesis node restarted without its pool.json (moved aside), and with an old
    /// backup of it: it learns its own history from the mesh before it grants, so two new
    /// nodes joining through it get fresh addresses, and nobody loses one.
    @Test(arguments: seeds)
    func theGenesisRestartedWithoutItsPoolFileOrWithAnOldOne(seed: UInt64) {
        for old in [false, true] {
            let sim = Simulation(seed: seed, pool: Self.pool24, poolSettings: Self.settings())
            sim.addNode()
            sim.addNode(joinVia: [0])
            #expect(sim.run(until: { sim.allBoundDistinct() }, within: .seconds(10)))
            let backup = sim.disk(of: 0)
            for _ in 0..<4 {
                sim.addNode(joinVia: [0])
                sim.run(for: .milliseconds(300))
            }
            #expect(sim.run(until: { sim.allBoundDistinct() && sim.allKnown() }, within: .seconds(20)))
            sim.run(for: .seconds(5))
            sim.crash(0)
            sim.run(for: .seconds(2))
            sim.restart(0, joinVia: [1], disk: old ? .restored(backup) : .wiped)
            let fresh = [sim.addNode(joinVia: [0]), sim.addNode(joinVia: [0])]
            #expect(sim.run(until: { fresh.allSatisfy { sim.address(of: $0) != nil } && sim.address(of: 0) != nil }, within: .seconds(20)),
                    "seed \(seed), old backup \(old): not all bound after the genesis came back")
            sim.run(for: .seconds(10))
            Self.expectSafe(sim, old ? "genesis from an old backup" : "genesis without pool.json", seed: seed)
            // The genesis never signed one seq twice.
            let seqs = sim.poolAgent(1)!.view.byGrantor[sim.nodes[0].id]!.grants.map(\.seq)
            #expect(Set(seqs).count == seqs.count, "seed \(seed), old backup \(old): the genesis reused a seq: \(seqs.sorted())")
            #expect(sim.poolAgent(0)!.counters.catchUps == 1)
        }
    }

    /// A node suspended longer than the reclaim (and lease) time wakes: it lets its lapsed
    /// lease go before it could clash, catches up, and gets an address again; nobody
    /// ever held one address twice.
    @Test(arguments: seeds)
    func aSuspendedNodeWakesAfterTheReclaimTime(seed: UInt64) {
        let sim = Self.settledMesh(5, seed: seed)
        sim.run(for: .seconds(10))
        let sleeper = 3
        sim.suspend(sleeper)
        sim.run(for: .seconds(45))
        let joiners = (0..<3).map { _ in sim.addNode(joinVia: [0]) }
        #expect(sim.run(until: { joiners.allSatisfy { sim.address(of: $0) != nil } }, within: .seconds(10)))
        sim.wake(sleeper)
        // Within two push-pull intervals (30 s each): news of a join that some member missed
        // (gossip reaches almost every member at once, not every one) comes with the next
        // push-pull, and the sleeper missed every join while it slept (seed 4: one member
        // learned of two joiners 40 s after they joined).
        #expect(sim.run(until: { sim.allBoundDistinct() && sim.allKnown() }, within: .seconds(60)), "seed \(seed): not all bound after the wake")
        #expect(sim.poolAgent(sleeper)!.counters.resumes == 1)
        Self.expectSafe(sim, "suspend", seed: seed)
    }
}

extension Array where Element == Int {
    func shuffledDeterministically(seed: UInt64) -> [Int] {
        var rng = SeededRandom(seed: seed)
        var a = self
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return a
    }
}
