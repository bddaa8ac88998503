import MeshCore
import MeshCrypto
import MeshPool
import MeshWire
import Testing

/// Reclaim grants in the fold: real Ed25519 votes, checked by every view on its own.
@Suite struct ReclaimTests {
    // Node 0 is genesis; it gives node 1 a quarter, node 2 a quarter, node 3 a little (the
    // node that departs), and keeps the rest (just under half).
    let h = History(seed: 77, nodes: 5, steps: 0)
    var id: [NodeID] { h.ids.map(\.nodeID) }

    struct Setup {
        var gen: Grant, toOne: Grant, toTwo: Grant, toThree: Grant, lease3: Grant
    }

    func sign(_ g: Grant, by i: Int) -> Grant {
        var g = g
        g.sign(with: h.auths[i])
        return g
    }

    func setup() -> Setup {
        let p = h.pool
        let quarter = UInt32(p.count / 4)
        let gen = sign(Grant(grantor: id[0], seq: 0, parent: .zero, range: p, grantee: id[0], kind: .space), by: 0)
        let toOne = sign(Grant(grantor: id[0], seq: 1, parent: gen.ref, range: AddressRange(p.last - quarter + 1, p.last), grantee: id[1], kind: .space), by: 0)
        let toTwo = sign(Grant(grantor: id[0], seq: 2, parent: gen.ref, range: AddressRange(p.last - 2 * quarter + 1, p.last - quarter), grantee: id[2], kind: .space), by: 0)
        let toThree = sign(Grant(grantor: id[0], seq: 3, parent: gen.ref, range: AddressRange(p.first, p.first + 15), grantee: id[3], kind: .space), by: 0)
        let lease3 = sign(Grant(grantor: id[3], seq: 1, parent: toThree.ref, range: AddressRange(p.first, p.first), grantee: id[3], kind: .lease), by: 3)
        return Setup(gen: gen, toOne: toOne, toTwo: toTwo, toThree: toThree, lease3: lease3)
    }

    func view(_ s: Setup, _ extra: [Grant] = []) -> RingView {
        h.view(of: [s.gen, s.toOne, s.toTwo, s.toThree, s.lease3] + extra)
    }

    func fenceEvents(_ out: [PoolAgent.Output]) -> [Bool] {
        out.compactMap { if case .event(.fenced(let f)) = $0 { return f } else { return nil } }
    }

    /// Every node starts fenced until it reaches most of the pool: not an event, unless it
    /// lasts half the reclaim time (then it is reported, once).
    @Test func aNodeFencedFromItsStartIsReportedAfterHalfTheReclaimTime() {
        var settings = PoolAgent.Settings()
        settings.reclaimTime = .seconds(20)
        let t0 = Instant.zero
        // Node 1 holds a quarter and reaches no one.
        var cut = PoolAgent(me: id[1], view: view(setup()), auth: h.auths[1], seq: 1, settings: settings, seed: 1, now: t0)
        var events: [Bool] = []
        var t = t0
        while t < t0 + .seconds(9.5) {
            events += fenceEvents(cut.tick(now: t))
            t = t + .seconds(0.5)
        }
        #expect(events.isEmpty, "reported during the start grace: \(events)")
        let fenced = cut.isFenced(now: t)
        #expect(fenced)
        while t < t0 + .seconds(15) {
            events += fenceEvents(cut.tick(now: t))
            t = t + .seconds(0.5)
        }
        #expect(events == [true])

        // The genesis node alone holds the whole pool: not fenced, said once.
        var genesis = PoolAgent(me: id[0], view: h.view(of: [setup().gen]), auth: h.auths[0], seq: 0, settings: settings, seed: 2, now: t0)
        var g: [Bool] = []
        for k in 0..<10 { g += fenceEvents(genesis.tick(now: t0 + .seconds(Double(k)))) }
        #expect(g == [false])
    }

    func vote(by i: Int, holding: Grant, cutoff: UInt64, successor: Int, in v: RingView) -> ReclaimVote {
        let seq = v.highestSeq(of: id[i]) ?? 0
        return ReclaimVote(signer: id[i], seq: seq, signature: h.auths[i].sign(ReclaimVote.signedBytes(holding: holding.ref, cutoff: cutoff, successor: id[successor], seq: seq)))
    }

    func reclaim(_ holding: Grant, by successor: Int, cutoff: UInt64, votes: [ReclaimVote], seq: UInt64 = 4, forced: Bool = false) -> Grant {
        sign(Grant(grantor: id[successor], seq: seq, parent: holding.ref, range: holding.range, grantee: id[successor], kind: .reclaim,
                   cutoff: cutoff, forced: forced, votes: votes), by: successor)
    }

    @Test func aReclaimWithVotesFromMoreThanHalfThePoolTakesTheRest() {
        let s = setup()
        var v = view(s)
        // Nodes 0 and 1 hold more than half the pool between them; node 0 alone does not.
        let v0 = vote(by: 0, holding: s.toThree, cutoff: 1, successor: 0, in: v)
        let v1 = vote(by: 1, holding: s.toThree, cutoff: 1, successor: 0, in: v)
        let alone = reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0])
        guard case .rejected(let why) = v.insert(alone) else { Issue.record("a minority reclaim was accepted"); return }
        #expect(why.contains("not a majority"))
        #expect(v.counters.badReclaims == 1)
        let r = reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v1])
        #expect(v.insert(r) == .added)
        // The departed node's lease (seq 1 ≤ cutoff) stands as its own holding; the rest of its space is node 0's.
        #expect(v.owner(of: h.pool.first)?.owner == id[3])
        #expect(v.owner(of: h.pool.first + 1)?.owner == id[0])
        #expect(v.owner(of: h.pool.first + 1)?.kind == .space)
        #expect(v.owner(of: h.pool.first + 15)?.grant == r.ref)
        // The lease is a holding of its own: reclaimed the same way, it becomes node 0's space.
        let w0 = vote(by: 0, holding: s.lease3, cutoff: 1, successor: 0, in: v), w1 = vote(by: 1, holding: s.lease3, cutoff: 1, successor: 0, in: v)
        #expect(v.insert(reclaim(s.lease3, by: 0, cutoff: 1, votes: [w0, w1], seq: 5)) == .added)
        #expect(v.owner(of: h.pool.first)?.owner == id[0])
        #expect(v.owner(of: h.pool.first)?.kind == .space)
        #expect(!v.ownership().contains { $0.owner == id[3] })
    }

    /// A departed node that merged its holdings: the merge is one holding, reclaimed whole
    /// (its range is the whole pool: the votes weigh all their signers hold), and the grant
    /// it merged holds nothing to reclaim.
    @Test func aMergedHoldingIsReclaimedWhole() {
        let s = setup()
        let p = h.pool
        let second = sign(Grant(grantor: id[0], seq: 4, parent: s.gen.ref, range: AddressRange(p.first + 100, p.first + 131), grantee: id[3], kind: .space), by: 0)
        let parents = [s.toThree.ref, second.ref].sorted()
        let merged = sign(Grant(grantor: id[3], seq: 2, parent: parents[0], range: p, grantee: id[3], kind: .merge, extraParents: [parents[1]]), by: 3)
        var v = view(s, [second, merged])
        #expect(v.owner(of: p.first + 1)?.grant == merged.ref && v.owner(of: p.first + 100)?.grant == merged.ref)
        let v0 = vote(by: 0, holding: merged, cutoff: 2, successor: 0, in: v)
        let v1 = vote(by: 1, holding: merged, cutoff: 2, successor: 0, in: v)
        guard case .rejected(let why) = v.insert(reclaim(merged, by: 0, cutoff: 2, votes: [v0], seq: 5)) else {
            Issue.record("a minority reclaim of a merge was accepted")
            return
        }
        #expect(why.contains("not a majority"))
        let r = reclaim(merged, by: 0, cutoff: 2, votes: [v0, v1], seq: 5)
        #expect(r.range == p)
        #expect(v.insert(r) == .added)
        #expect(v.owner(of: p.first)?.owner == id[3], "the lease stands (a holding of its own)")
        #expect(v.owner(of: p.first + 1)?.grant == r.ref && v.owner(of: p.first + 131)?.grant == r.ref)
        #expect(v.ownership().filter { $0.owner == id[3] }.map(\.range) == [AddressRange(p.first, p.first)])
    }

    @Test func theDepartedNodesLaterGrantsLoseToTheReclaim() {
        let s = setup()
        var v = view(s)
        let v0 = vote(by: 0, holding: s.toThree, cutoff: 1, successor: 0, in: v)
        let v1 = vote(by: 1, holding: s.toThree, cutoff: 1, successor: 0, in: v)
        let r = reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v1])
        // Node 3, cut off, leased an address to node 4 at seq 2: above the cutoff.
        let late = sign(Grant(grantor: id[3], seq: 2, parent: s.toThree.ref, range: AddressRange(h.pool.first + 5, h.pool.first + 5),
                              grantee: id[4], kind: .lease), by: 3)
        // Whatever the order of arrival, the reclaim wins and every view agrees.
        var a = v, b = v
        #expect(a.insert(late) == .added && a.insert(r) == .added)
        #expect(b.insert(r) == .added && b.insert(late) == .added)
        #expect(a.ownership() == b.ownership())
        #expect(a.owner(of: h.pool.first + 5)?.owner == id[0])
        // A grant at or below the cutoff stands.
        #expect(v.insert(r) == .added)
        #expect(v.owner(of: h.pool.first)?.owner == id[3])
    }

    @Test func forgedOrMisdirectedReclaimsAreRejected() {
        let s = setup()
        var v = view(s)
        let v0 = vote(by: 0, holding: s.toThree, cutoff: 1, successor: 0, in: v)
        let v1 = vote(by: 1, holding: s.toThree, cutoff: 1, successor: 0, in: v)
        // A vote signed for another successor does not count for this one.
        let v1other = vote(by: 1, holding: s.toThree, cutoff: 1, successor: 2, in: v)
        func why(_ g: Grant) -> String? {
            var w = v
            if case .rejected(let r) = w.insert(g) { return r }
            return nil
        }
        #expect(why(reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v1other])) == "a vote's signature does not verify")
        // A vote for another cutoff does not count either.
        #expect(why(reclaim(s.toThree, by: 0, cutoff: 2, votes: [v0, v1])) == "a vote's signature does not verify")
        // The same signer twice, or the departed node voting, do not add up.
        #expect(why(reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v0])) == "a vote by the departed node, or two by one signer")
        let v3 = vote(by: 3, holding: s.lease3, cutoff: 1, successor: 0, in: v)
        let v0lease = vote(by: 0, holding: s.lease3, cutoff: 1, successor: 0, in: v)
        #expect(why(reclaim(s.lease3, by: 0, cutoff: 1, votes: [v0lease, v3])) == "a vote by the departed node, or two by one signer")
        // A reclaim must take its parent whole, for its own signer, from someone else.
        var part = reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v1])
        part.range = AddressRange(h.pool.first, h.pool.first + 1)
        part.sign(with: h.auths[0])
        #expect(why(part) == "a reclaim must take its parent's whole range")
        var elsewhere = reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v1])
        elsewhere.grantee = id[2]
        elsewhere.sign(with: h.auths[0])
        #expect(why(elsewhere) == "a reclaim must go to its signer")
        #expect(why(reclaim(s.toOne, by: 1, cutoff: 0, votes: [v0, v1])) == "a node cannot reclaim its own grant")
        // Signed by someone else than its grantor.
        var forged = reclaim(s.toThree, by: 0, cutoff: 1, votes: [v0, v1])
        forged.sign(with: h.auths[2])
        #expect(why(forged) == "bad signature")
        var fresh = view(s)
        #expect(v.ownership() == fresh.ownership(), "a rejected reclaim changed the view")
    }

    /// A view of the setup in a mesh whose token names node 4's key as the admin key.
    func adminView(_ s: Setup) -> RingView {
        var v = RingView(pool: h.pool, genesis: id[0], admin: id[4], auth: h.auths[0])
        for g in [s.gen, s.toOne, s.toTwo, s.toThree, s.lease3] { v.insert(g) }
        return v
    }

    @Test func aForcedReclaimStandsOnlyWithTheAdminKeysSignature() {
        let s = setup()
        let plan = ForcedHolding(holding: s.toThree.ref, cutoff: 1, successor: id[2])
        let admin = plan.authorize(with: h.auths[4], adminID: id[4])
        // A mesh without an admin key: no forced reclaim at all, whoever signs it.
        var none = view(s)
        guard case .rejected(let why) = none.insert(reclaim(s.toThree, by: 2, cutoff: 1, votes: [admin], forced: true)) else {
            Issue.record("a forced reclaim was accepted in a mesh without an admin key")
            return
        }
        #expect(why.contains("no admin key"))
        // As reported: a member forces a reclaim with no votes, or signs the authorisation itself.
        var v = adminView(s)
        #expect(v.insert(reclaim(s.toThree, by: 2, cutoff: 1, votes: [], forced: true)) != .added)
        let selfSigned = plan.authorize(with: h.auths[2], adminID: id[2])
        #expect(v.insert(reclaim(s.toThree, by: 2, cutoff: 1, votes: [selfSigned], forced: true)) != .added)
        var claimedAdmin = selfSigned
        claimedAdmin.signer = id[4]
        #expect(v.insert(reclaim(s.toThree, by: 2, cutoff: 1, votes: [claimedAdmin], forced: true)) != .added)
        // The admin's signature for another successor or cutoff does not transfer.
        #expect(v.insert(reclaim(s.toThree, by: 1, cutoff: 1, votes: [admin], forced: true)) != .added)
        #expect(v.insert(reclaim(s.toThree, by: 2, cutoff: 2, votes: [admin], forced: true)) != .added)
        #expect(v.counters.forcedReclaims == 0)
        var fresh = adminView(s)
        #expect(v.ownership() == fresh.ownership(), "a rejected forced reclaim changed the view")
        // With it: taken, and counted.
        #expect(v.insert(reclaim(s.toThree, by: 2, cutoff: 1, votes: [admin], forced: true)) == .added)
        #expect(v.counters.forcedReclaims == 1)
        #expect(v.owner(of: h.pool.first + 1)?.owner == id[2])
    }

    /// A vote weighs what its signer holds in the fold: as reported, one vote from a key
    /// with no space (it once could claim the whole pool) weighs nothing.
    @Test func aVoteWeighsWhatTheFoldSaysItsSignerHolds() {
        let s = setup()
        var v = view(s)
        guard case .rejected(let why) = v.insert(reclaim(s.toThree, by: 4, cutoff: 1, votes: [vote(by: 4, holding: s.toThree, cutoff: 1, successor: 4, in: v)])) else {
            Issue.record("a vote from a key holding nothing carried a reclaim")
            return
        }
        #expect(why.contains("hold 0 of"))
        #expect(v.counters.weightlessVotes == 1)
        // Node 2 (a quarter) and a throwaway key: still a quarter.
        #expect(v.insert(reclaim(s.toThree, by: 2, cutoff: 1, votes: [vote(by: 2, holding: s.toThree, cutoff: 1, successor: 2, in: v),
                                                                       vote(by: 4, holding: s.toThree, cutoff: 1, successor: 2, in: v)])) != .added)
        // Holders of most of the pool carry it.
        let honest = [vote(by: 0, holding: s.toThree, cutoff: 1, successor: 0, in: v), vote(by: 1, holding: s.toThree, cutoff: 1, successor: 0, in: v)]
        #expect(v.insert(reclaim(s.toThree, by: 0, cutoff: 1, votes: honest)) == .added)
    }

    /// At exactly half, the side holding the pool's first address has the quorum.
    @Test func aTieIsBrokenByThePoolsFirstAddress() {
        let p = AddressRange(10, 19)
        #expect(RingView.isQuorum(RangeSet(AddressRange(10, 14)), of: p))
        #expect(!RingView.isQuorum(RangeSet(AddressRange(15, 19)), of: p))
        #expect(RingView.isQuorum(RangeSet(AddressRange(12, 17)), of: p))
        #expect(!RingView.isQuorum(RangeSet(AddressRange(11, 14)), of: p))
    }

    @Test func reclaimsRoundTripOnTheWire() throws {
        let s = setup()
        let v = view(s)
        let r = reclaim(s.toThree, by: 0, cutoff: 1, votes: [vote(by: 0, holding: s.toThree, cutoff: 1, successor: 0, in: v),
                                                            vote(by: 1, holding: s.toThree, cutoff: 1, successor: 0, in: v)])
        let bytes = r.wireBytes
        #expect(bytes.count == r.encodedSize)
        #expect(try Grant(wireBytes: bytes) == r)
        for n in stride(from: 0, to: bytes.count, by: 7) { #expect(throws: WireError.self) { try Grant(wireBytes: Array(bytes.prefix(n))) } }
        let ask = PoolPacket(sender: id[0], message: .reclaimAsk(holding: s.toThree.ref, cutoff: 1))
        #expect(try PoolPacket(wireBytes: ask.wireBytes) == ask)
        let answer = PoolPacket(sender: id[1], message: .reclaimVote(holding: s.toThree.ref, cutoff: 1, vote: r.votes[1]))
        #expect(try PoolPacket(wireBytes: answer.wireBytes) == answer)
    }
}
