import MeshCore
import MeshCrypto
import MeshPool
import MeshWire
import Testing

/// Random allocation histories: real signed grants by a few nodes that hand out space
/// and leases from what they hold, with some deliberately conflicting grants mixed in, and
/// merges of what a node holds by several grants.
struct History {
    let ids: [NodeIdentity]
    let auths: [Ed25519RecordAuthenticator]
    let pool = AddressRange(IPv4Address(100, 80, 0, 1).value, IPv4Address(100, 80, 3, 254).value)
    var grants: [Grant] = []
    /// (earlier, later) grants by one grantor that overlap.
    var conflicts: [(Grant, Grant)] = []

    init(seed: UInt64, nodes: Int = 6, steps: Int = 60, conflictRate: UInt64 = 10) {
        var rng = SeededRandom(seed: seed)
        ids = (0..<nodes).map { _ in NodeIdentity.generate(using: &rng) }
        auths = ids.map { Ed25519RecordAuthenticator(identity: $0) }
        var view = makeView()
        var seq = [UInt64](repeating: 0, count: nodes)
        let genesis = genesisGrant()
        view.insert(genesis)
        grants.append(genesis)
        for _ in 0..<steps {
            let own = view.ownership().filter { $0.kind == .space }
            guard !own.isEmpty else { break }
            // Now and then a node merges some of the grants it holds free space by.
            if rng.next() % 6 == 0 {
                let owner = own[Int(rng.next() % UInt64(own.count))].owner
                let refs = Array(Set(own.filter { $0.owner == owner }.map(\.grant))).sorted().filter { _ in rng.next() % 4 != 0 }
                if refs.count >= 2, let g = ids.firstIndex(where: { $0.nodeID == owner }) {
                    seq[g] += 1
                    var m = Grant(grantor: owner, seq: seq[g], parent: refs[0], range: pool, grantee: owner, kind: .merge,
                                  extraParents: Array(refs.dropFirst().prefix(Grant.mergeLimit - 1)))
                    m.sign(with: auths[g])
                    if view.insert(m) == .added { grants.append(m) }
                    continue
                }
            }
            let pick = own[Int(rng.next() % UInt64(own.count))]
            guard let g = ids.firstIndex(where: { $0.nodeID == pick.owner }) else { continue }
            let parent = view.grants[pick.grant]!
            let conflicting = rng.next() % 100 < conflictRate
            // A conflicting grant reuses part of the parent's whole range, not just what is free.
            // (A merge's range is the whole pool: from an earlier child's range, then.)
            let from = !conflicting ? pick.range
                : parent.kind == .merge ? (grants.last { $0.parent == pick.grant }?.range ?? pick.range) : parent.range
            let a = from.first + UInt32(rng.next() % UInt64(from.count))
            let lease = rng.next() % 3 == 0
            let b = lease ? a : min(from.last, a + UInt32(rng.next() % 64))
            seq[g] += 1
            let grantee = ids[Int(rng.next() % UInt64(nodes))].nodeID
            var grant = Grant(grantor: ids[g].nodeID, seq: seq[g], parent: pick.grant, range: AddressRange(a, b), grantee: grantee,
                              kind: lease ? .lease : .space)
            grant.sign(with: auths[g])
            if conflicting, let earlier = grants.first(where: { $0.parent == pick.grant && $0.range.intersection(grant.range) != nil }) {
                conflicts.append((earlier, grant))
            }
            if view.insert(grant) == .added { grants.append(grant) }
        }
    }

    func makeView() -> RingView { RingView(pool: pool, genesis: ids[0].nodeID, auth: auths[0]) }

    /// The genesis grant of node 0, signed.
    func genesisGrant() -> Grant {
        var g = Grant(grantor: ids[0].nodeID, seq: 0, parent: .zero, range: pool, grantee: ids[0].nodeID, kind: .space)
        g.sign(with: auths[0])
        return g
    }

    func view(of subset: [Grant]) -> RingView {
        var v = makeView()
        for g in subset { v.insert(g) }
        return v
    }
}

@Suite struct RingViewPropertyTests {
    static let seeds: [UInt64] = [1, 2, 3, 4, 5, 6, 7, 8]

    @Test(arguments: seeds)
    func anyDeliveryOrderGivesTheSameView(seed: UInt64) {
        let h = History(seed: seed)
        var reference = h.view(of: h.grants)
        let expected = reference.ownership()
        var rng = SeededRandom(seed: seed ^ 0xfeed)
        for _ in 0..<10 {
            var shuffled = h.grants
            shuffled.shuffle(using: &rng)
            var v = h.view(of: shuffled)
            #expect(v.ownership() == expected, "seed \(seed)")
            #expect(v.orphanCount == 0)
        }
    }

    @Test(arguments: seeds)
    func mergeIsCommutativeAssociativeAndIdempotent(seed: UInt64) {
        let h = History(seed: seed)
        var rng = SeededRandom(seed: seed ^ 0xbeef)
        // Three overlapping random subsets, as three nodes might have seen them.
        let parts = (0..<3).map { _ in h.grants.filter { _ in rng.next() % 3 != 0 } }
        let (a, b, c) = (h.view(of: parts[0]), h.view(of: parts[1]), h.view(of: parts[2]))
        func merged(_ x: RingView, _ y: RingView) -> RingView { var m = x; m.merge(y); return m }
        func same(_ x: RingView, _ y: RingView) -> Bool {
            var x = x, y = y
            return x.ownership() == y.ownership() && Set(x.allGrants) == Set(y.allGrants)
        }
        #expect(same(merged(a, b), merged(b, a)), "commutative, seed \(seed)")
        #expect(same(merged(merged(a, b), c), merged(a, merged(b, c))), "associative, seed \(seed)")
        #expect(same(merged(a, a), a), "idempotent, seed \(seed)")
        var all = merged(merged(a, b), c)
        var whole = h.view(of: parts.flatMap { $0 })
        #expect(all.ownership() == whole.ownership())
    }

    @Test(arguments: seeds)
    func theFoldCoversThePoolExactlyOnce(seed: UInt64) {
        let h = History(seed: seed)
        var v = h.view(of: h.grants)
        let o = v.ownership()
        #expect(o.first?.range.first == h.pool.first)
        #expect(o.last?.range.last == h.pool.last)
        for (x, y) in zip(o, o.dropFirst()) {
            #expect(UInt64(x.range.last) + 1 == UInt64(y.range.first), "gap or overlap between \(x.range) and \(y.range)")
        }
        #expect(o.reduce(0) { $0 + $1.range.count } == h.pool.count)
        for lease in o where lease.kind == .lease { #expect(lease.range.count >= 1) }
    }

    @Test(arguments: seeds)
    func theLowerSequenceNumberWinsAConflict(seed: UInt64) {
        let h = History(seed: seed, conflictRate: 30)
        #expect(!h.conflicts.isEmpty)
        var v = h.view(of: h.grants)
        for (earlier, later) in h.conflicts {
            guard let overlap = earlier.range.intersection(later.range) else { continue }
            // Every overlapping address is held through the earlier grant's subtree, never the later one's.
            for a in [overlap.first, overlap.last] {
                let holder = v.owner(of: a)!
                #expect(!isDescendant(holder.grant, of: later.ref, in: v) || later.ref == earlier.ref, "seed \(seed): \(a)")
            }
        }
    }

    func isDescendant(_ ref: Bytes32, of ancestor: Bytes32, in v: RingView) -> Bool {
        var r = ref
        while let g = v.grants[r] {
            if r == ancestor { return true }
            if g.isGenesis { return false }
            r = g.parent
        }
        return false
    }
}

@Suite struct RingViewRejectionTests {
    let h = History(seed: 42, nodes: 3, steps: 0)

    func genesis() -> Grant { h.genesisGrant() }

    func grant(by i: Int, parent: Grant, range: AddressRange, to j: Int, kind: Grant.Kind = .space, seq: UInt64 = 1, signer: Int? = nil) -> Grant {
        var g = Grant(grantor: h.ids[i].nodeID, seq: seq, parent: parent.ref, range: range, grantee: h.ids[j].nodeID, kind: kind)
        g.sign(with: h.auths[signer ?? i])
        return g
    }

    @Test func onlyTheOwnerCanGrant() {
        var v = h.makeView()
        let gen = genesis()
        #expect(v.insert(gen) == .added)
        let r = AddressRange(h.pool.first, h.pool.first + 9)
        // Node 1 does not hold the genesis grant: it cannot give from it.
        #expect(v.insert(grant(by: 1, parent: gen, range: r, to: 2)) == .rejected("its grantor does not hold the parent grant"))
        // A grant claiming to be by node 0, signed by node 1.
        #expect(v.insert(grant(by: 0, parent: gen, range: r, to: 1, signer: 1)) == .rejected("bad signature"))
        // Outside its parent, or outside the pool.
        let small = grant(by: 0, parent: gen, range: r, to: 1)
        #expect(v.insert(small) == .added)
        #expect(v.insert(grant(by: 1, parent: small, range: AddressRange(r.first, r.last + 1), to: 2)) == .rejected("its range \(AddressRange(r.first, r.last + 1)) is not inside its parent's \(r)"))
        #expect(v.insert(grant(by: 0, parent: gen, range: AddressRange(h.pool.last, h.pool.last + 1), to: 1)) == .rejected("range \(AddressRange(h.pool.last, h.pool.last + 1)) is outside the pool"))
        // A lease is granted onward only whole, as space (a release), never re-leased.
        let lease = grant(by: 0, parent: gen, range: AddressRange(r.last + 1, r.last + 1), to: 2, kind: .lease, seq: 2)
        #expect(v.insert(lease) == .added)
        #expect(v.insert(grant(by: 2, parent: lease, range: lease.range, to: 1, kind: .lease)) == .rejected("its parent is a lease, which can only be released whole"))
        #expect(v.counters.badSignatures == 1 && v.counters.badChains == 4)
        // Releasing the lease whole, as space, is allowed.
        let release = grant(by: 2, parent: lease, range: lease.range, to: 0, kind: .space)
        var released = v
        #expect(released.insert(release) == .added)
        #expect(released.owner(of: lease.range.first)?.owner == h.ids[0].nodeID)
        #expect(released.owner(of: lease.range.first)?.kind == .space)
        // Nothing rejected changed the view: node 1 holds exactly r, node 2 exactly its lease.
        #expect(v.freeSpace(of: h.ids[1].nodeID).map(\.range) == [r])
        #expect(v.leases(of: h.ids[2].nodeID).map(\.range) == [lease.range])
    }

    @Test func genesisMustComeFromTheTokensGenesisNode() {
        var v = h.makeView()
        var fake = Grant(grantor: h.ids[1].nodeID, seq: 0, parent: .zero, range: h.pool, grantee: h.ids[1].nodeID, kind: .space)
        fake.sign(with: h.auths[1])
        #expect(v.insert(fake) == .rejected("a genesis grant must give the whole pool from the token's genesis node to itself"))
        #expect(v.insert(genesis()) == .added)
        var second = Grant(grantor: h.ids[0].nodeID, seq: 1, parent: .zero, range: h.pool, grantee: h.ids[0].nodeID, kind: .space)
        second.sign(with: h.auths[0])
        #expect(v.insert(second) == .rejected("a second genesis grant"))
    }

    @Test func orphansWaitForTheirParent() {
        var v = h.makeView()
        let gen = genesis()
        let child = grant(by: 0, parent: gen, range: AddressRange(h.pool.first, h.pool.first + 3), to: 1)
        let grandchild = grant(by: 1, parent: child, range: AddressRange(h.pool.first, h.pool.first), to: 2, kind: .lease)
        #expect(v.insert(grandchild) == .orphan)
        #expect(v.insert(child) == .orphan)
        #expect(v.ownership().isEmpty)
        #expect(v.insert(gen) == .added)
        #expect(v.orphanCount == 0 && v.grantCount == 3)
        #expect(v.owner(of: h.pool.first)?.owner == h.ids[2].nodeID)
        #expect(v.insert(child) == .duplicate)
    }

    @Test func aFloodOfOrphansIsBounded() {
        var v = h.makeView()
        var rng = SeededRandom(seed: 9)
        for k in 0..<(RingView.orphanLimit + 10) {
            var g = Grant(grantor: h.ids[1].nodeID, seq: UInt64(k), parent: Bytes32(rng.bytes(32))!,
                          range: AddressRange(h.pool.first, h.pool.first), grantee: h.ids[2].nodeID, kind: .space)
            g.sign(with: Ed25519RecordAuthenticator(identity: h.ids[1]))
            v.insert(g)
        }
        #expect(v.orphanCount == RingView.orphanLimit)
        #expect(v.counters.orphansDropped == 10)
        // Genuine grants still get in.
        #expect(v.insert(genesis()) == .added)
    }

    @Test func grantsRoundTripOnTheWire() throws {
        let g = grant(by: 0, parent: genesis(), range: AddressRange(h.pool.first, h.pool.first + 7), to: 1, kind: .lease)
        let bytes = g.wireBytes
        #expect(try Grant(wireBytes: bytes) == g)
        for n in 0..<bytes.count { #expect(throws: WireError.self) { try Grant(wireBytes: Array(bytes.prefix(n))) } }
        var bad = bytes
        bad[32 + 8 + 32] = 0xff  // first > last
        #expect(throws: WireError.self) { try Grant(wireBytes: bad) }
    }
}
