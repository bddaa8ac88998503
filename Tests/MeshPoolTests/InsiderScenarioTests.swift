import MeshCore
import MeshCrypto
@testable import MeshPool
import MeshSim
import Testing

/// Insider attacks, tried in the composed simulator: one member holding the mesh token (and
/// its own identity) signs what an honest node never would and sends it to every member.
/// Each attack is refused and counted, and the honest nodes keep allocating with no address
/// ever held twice.
@Suite struct InsiderScenarioTests {
    /// A member splits its space into thousands of one-address grants and sends them all
    /// to everyone at once. Each node takes at most the per-member burst plus the per-member
    /// rate (PoolAgent+Limits.swift); the rest is dropped and counted; joins still work.
    @Test(arguments: ScenarioTests.seeds)
    func aGrantFloodIsLimitedPerMember(seed: UInt64) {
        // Limits scaled down with the flood (the defaults are 4,096 and 16 a second), so that
        // the made-up holders' space, reclaimed after the reclaim time, stays quick to simulate.
        let sim = ScenarioTests.settledMesh(9, seed: seed, pool: ScenarioTests.pool16) {
            $0.grantBurst = 256
            $0.grantRate = 4
        }
        let s = sim.poolSettings
        // Past every node's start-up window, in which history is taken unlimited.
        sim.run(for: s.historyWindow + .seconds(5))
        let attacker = 4
        let attackerID = sim.nodes[attacker].id
        let honest = sim.upNodes.filter { $0 != attacker }
        let before = Dictionary(uniqueKeysWithValues: honest.map { ($0, sim.poolAgent($0)!.view.byGrantor[attackerID]?.maxSeq ?? 0) })
        let flood = 1500
        var signed = 0
        var rng = SeededRandom(seed: seed ^ 0xf100d)
        sim.withPool(attacker) { p in
            var made: [Grant] = []
            for o in p.view.freeSpace(of: p.me) {
                var a = o.range.first
                while made.count < flood, a <= o.range.last {
                    let phantom = NodeID(bytes: rng.bytes(32))!
                    if let g = p.signNext(Grant(grantor: p.me, seq: 0, parent: o.grant, range: AddressRange(a, a), grantee: phantom, kind: .space)) {
                        made.append(g)
                    }
                    a += 1
                }
            }
            signed = made.count
            var out: [PoolAgent.Output] = []
            for m in p.members { for b in p.batches(made) { out.append(.send(p.signed(.grants(b)), to: m)) } }
            return out
        }
        #expect(signed == flood, "seed \(seed): the attacker signed only \(signed) grants")
        let floodAt = sim.now
        let joiners = (0..<3).map { k in sim.addNode(joinVia: [honest[k]]) }
        #expect(sim.run(until: { joiners.allSatisfy { sim.address(of: $0) != nil } }, within: .seconds(10)),
                "seed \(seed): joiners without an address during a grant flood")
        sim.run(for: .seconds(20))
        let allowed = s.grantBurst + UInt64((sim.now - floodAt).seconds * s.grantRate) + 1
        for i in honest {
            let p = sim.poolAgent(i)!
            let taken = (p.view.byGrantor[attackerID]?.grants.count ?? 0)
            let maxSeq = p.view.byGrantor[attackerID]?.maxSeq ?? 0
            #expect(maxSeq <= before[i]! + allowed, "seed \(seed): n\(i) took the attacker's grants up to seq \(maxSeq) (limit \(before[i]! + allowed))")
            #expect(taken < flood, "seed \(seed): n\(i) took all \(taken) of the flood")
            #expect(p.counters.rateLimitedGrants > 0, "seed \(seed): n\(i) counted no grant over the limit")
        }
        // The made-up holders never come alive. Their space sits next to the attacker's, so
        // the attacker is their successor, and its reclaims meet the same limit as its
        // flood: honest nodes take them as its ceiling rises. Meanwhile joins go on.
        sim.run(for: s.reclaimTime * 2)
        let late = sim.addNode(joinVia: [honest[1]])
        #expect(sim.run(until: { sim.address(of: late) != nil }, within: .seconds(10)), "seed \(seed): a join after the reclaim time got no address")
        ScenarioTests.expectSafe(sim, "grant flood", seed: seed)
    }

    /// With real signatures: a member pushes a forced reclaim of the genesis grant
    /// "authorised" by its own key (the mesh has no admin key here), voted reclaims of a
    /// live member's lease whose votes are by throwaway keys (and its own), and sends DISCOVERs
    /// under made-up node IDs (signed by their own fresh keys) and in other members' names
    /// (signed by its own key). Every honest node refuses and counts each kind; nobody loses
    /// an address, and a node joining afterwards is served.
    @Test(arguments: ScenarioTests.seeds)
    func forgedForcedReclaimsAndRequestsUnderOtherIDsAreRefused(seed: UInt64) {
        let sim = ScenarioTests.settledMesh(5, seed: seed, realCrypto: true)
        sim.run(for: .seconds(5))
        let attacker = 2
        let honest = sim.upNodes.filter { $0 != attacker }
        let before = honest.map { sim.address(of: $0) }
        var rng = SeededRandom(seed: seed ^ 0xbad)
        sim.withPool(attacker) { p in
            var out: [PoolAgent.Output] = []
            let root = p.view.genesisRef!
            let genesis = p.view.grants[root]!
            // The whole pool, taken by one forced reclaim, its "authorisation" signed by the attacker.
            var forced = Grant(grantor: p.me, seq: p.seq + 1, parent: root, range: genesis.range, grantee: p.me, kind: .reclaim,
                               cutoff: 0, forced: true,
                               votes: [ReclaimVote(signer: p.me, seq: 0,
                                                   signature: p.auth.sign(ReclaimVote.signedBytes(holding: root, cutoff: 0, successor: p.me, seq: 0)))])
            forced.sign(with: p.auth)
            for m in p.members { out.append(.send(p.signed(.grants([forced])), to: m)) }
            // Over-claiming votes: a voted reclaim of a live member's lease, its votes by
            // eight throwaway keys (valid signatures; they never held anything), and the
            // same with the attacker's own vote added. Votes claim no addresses: each weighs
            // what the fold says its signer held, so neither is near a quorum.
            let victim = p.members.sorted()[0]
            if let lease = p.view.leases(of: victim).first, let holding = p.view.grants[lease.grant] {
                let cutoff = p.view.highestSeq(of: victim) ?? 0
                func vote(_ a: Ed25519RecordAuthenticator, _ id: NodeID, seq: UInt64) -> ReclaimVote {
                    ReclaimVote(signer: id, seq: seq, signature: a.sign(ReclaimVote.signedBytes(holding: lease.grant, cutoff: cutoff, successor: p.me, seq: seq)))
                }
                let throwaway: [ReclaimVote] = (0..<8).map { _ in
                    let k = NodeIdentity.generate(using: &rng)
                    return vote(Ed25519RecordAuthenticator(identity: k), k.nodeID, seq: 0)
                }
                let own = ReclaimVote(signer: p.me, seq: p.seq,
                                      signature: p.auth.sign(ReclaimVote.signedBytes(holding: lease.grant, cutoff: cutoff, successor: p.me, seq: p.seq)))
                for (k, votes) in [throwaway, throwaway + [own]].enumerated() {
                    var r = Grant(grantor: p.me, seq: p.seq + 2 + UInt64(k), parent: lease.grant, range: holding.range, grantee: p.me,
                                  kind: .reclaim, cutoff: cutoff, votes: votes)
                    r.sign(with: p.auth)
                    for m in p.members { out.append(.send(p.signed(.grants([r])), to: m)) }
                }
            } else {
                Issue.record("seed \(seed): the attacker's view holds no lease of n\(victim.fingerprint)")
            }
            for k in 0..<10 {
                // Under a made-up ID, signed by that ID's own (fresh) key: not a member.
                let made = NodeIdentity.generate(using: &rng)
                let phantom = Ed25519RecordAuthenticator(identity: made)
                var ask = PoolPacket(sender: made.nodeID, message: .discover(xid: UInt32(k), requested: nil))
                ask.signature = phantom.sign(ask.signedBytes)
                // In another member's name, signed by the attacker: the signature fails.
                var forged = PoolPacket(sender: p.members[k % p.members.count], message: .discover(xid: UInt32(100 + k), requested: nil))
                forged.signature = p.auth.sign(forged.signedBytes)
                for m in p.members {
                    out.append(.send(ask, to: m))
                    // (Not to the member named: a node drops unread a packet in its own name.)
                    if m != forged.sender { out.append(.send(forged, to: m)) }
                }
            }
            return out
        }
        sim.run(for: .seconds(5))
        for i in honest {
            let p = sim.poolAgent(i)!
            #expect(p.view.counters.badReclaims >= 3, "seed \(seed): n\(i) refused \(p.view.counters.badReclaims) of the forced and the two voted reclaims")
            #expect(p.view.counters.weightlessVotes >= 1, "seed \(seed): n\(i) did not count the throwaway keys' votes as weightless")
            #expect(p.view.counters.forcedReclaims == 0, "seed \(seed): n\(i) accepted a forced reclaim")
            #expect(p.counters.refusedNonMembers >= 10, "seed \(seed): n\(i) refused \(p.counters.refusedNonMembers) requests from made-up IDs")
            #expect(p.counters.badPacketSignatures >= 1, "seed \(seed): n\(i) counted no packet signed in another's name")
        }
        #expect(honest.map { sim.address(of: $0) } == before, "seed \(seed): an honest node's address changed")
        let late = sim.addNode(joinVia: [honest[0]])
        #expect(sim.run(until: { sim.address(of: late) != nil }, within: .seconds(10)), "seed \(seed): a join after the attack got no address")
        ScenarioTests.expectSafe(sim, "forged reclaim and requests", seed: seed)
    }

    /// With real signatures: a member forges checkpoints that hand the whole pool to
    /// identities it minted (and, in one, to itself), each signed by every identity its
    /// holdings name, so that by its own holdings it is signed by a quorum. One is numbered
    /// next, one far ahead. Every caught-up node weighs the signers in its own view, where
    /// they hold the attacker's share at most, and refuses both: counted, nothing changes,
    /// and a node joining afterwards is served. (A node that holds nothing, or is catching
    /// up, would take one on trust: docs/pool.md, "What a malicious member can still do".)
    @Test(arguments: ScenarioTests.seeds)
    func aForgedCheckpointIsRefusedByEveryCaughtUpNode(seed: UInt64) {
        let sim = ScenarioTests.settledMesh(5, seed: seed, realCrypto: true)
        sim.run(for: .seconds(5))
        let attacker = 2
        let honest = sim.upNodes.filter { $0 != attacker }
        let before = honest.map { sim.address(of: $0) }
        var rng = SeededRandom(seed: seed ^ 0xf0e9ed)
        sim.withPool(attacker) { p in
            let pool = p.view.pool
            let minted = (0..<4).map { _ in NodeIdentity.generate(using: &rng) }
            func forged(number: UInt64, holders: [NodeID], signers: [(NodeID, any RecordAuthenticator)]) -> PoolCheckpoint {
                let size = pool.count / UInt64(holders.count)
                let holdings = holders.enumerated().map { k, id in
                    let first = pool.first + UInt32(UInt64(k) * size)
                    let last = k == holders.count - 1 ? pool.last : first + UInt32(size) - 1
                    let range = AddressRange(first, last)
                    return PoolCheckpoint.Holding(ref: Bytes32(rng.bytes(32))!,
                                                  grant: Grant(grantor: id, seq: 1, parent: .zero, range: range, grantee: id, kind: .space),
                                                  held: RangeSet(range))
                }
                var cp = PoolCheckpoint(number: number, previous: p.view.base?.ref ?? .zero,
                                        marks: holders.map { PoolCheckpoint.Mark(grantor: $0, seq: 1) }, holdings: holdings)
                cp.signatures = signers.map { id, a in PoolCheckpoint.Signature(signer: id, signature: a.sign(PoolCheckpoint.signedBytes(ref: cp.ref))) }
                return cp
            }
            let mintedSigners: [(NodeID, any RecordAuthenticator)] = minted.map { ($0.nodeID, Ed25519RecordAuthenticator(identity: $0)) }
            let next = p.checkpointNumber + 1
            let cps = [
                forged(number: next, holders: minted.map(\.nodeID), signers: mintedSigners),
                forged(number: next + 1000, holders: [p.me] + minted.map(\.nodeID), signers: [(p.me, p.auth)] + mintedSigners),
            ]
            var out: [PoolAgent.Output] = []
            for cp in cps { for m in p.members { p.sendCheckpoint(cp, to: m, final: true, &out) } }
            return out
        }
        sim.run(for: .seconds(5))
        for i in honest {
            let p = sim.poolAgent(i)!
            #expect(p.checkpointNumber == 0, "seed \(seed): n\(i) moved onto forged checkpoint \(p.checkpointNumber)")
            #expect(p.counters.checkpointsRefused >= 2, "seed \(seed): n\(i) refused \(p.counters.checkpointsRefused) of the 2 forged checkpoints")
            #expect(p.counters.checkpointsTrusted == 0 && p.counters.checkpointsWeighed == 0, "seed \(seed): n\(i) took a checkpoint it could not fold")
        }
        #expect(honest.map { sim.address(of: $0) } == before, "seed \(seed): an honest node's address changed")
        let late = sim.addNode(joinVia: [honest[0]])
        #expect(sim.run(until: { sim.address(of: late) != nil }, within: .seconds(10)), "seed \(seed): a join after the forged checkpoints got no address")
        ScenarioTests.expectSafe(sim, "forged checkpoints", seed: seed)
    }
}
