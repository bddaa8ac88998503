import MeshCore
import MeshCrypto
@testable import MeshPool
import MeshWire
import Testing

/// Merge grants (docs/pool.md, "Merging holdings"): a node gathers what it holds by several
/// grants into one, so that a checkpoint keeps one holding where it kept many.
@Suite struct MergeTests {
    let h = History(seed: 7, nodes: 3, steps: 0)

    func genesis() -> Grant { h.genesisGrant() }

    func grant(by i: Int, seq: UInt64, parent: Bytes32, range: AddressRange, to j: Int, kind: Grant.Kind = .space) -> Grant {
        var g = Grant(grantor: h.ids[i].nodeID, seq: seq, parent: parent, range: range, grantee: h.ids[j].nodeID, kind: kind)
        g.sign(with: h.auths[i])
        return g
    }

    func merge(by i: Int, seq: UInt64, _ parents: [Bytes32], range: AddressRange? = nil, to j: Int? = nil, sorted: Bool = true) -> Grant {
        let ps = sorted ? parents.sorted() : parents
        var g = Grant(grantor: h.ids[i].nodeID, seq: seq, parent: ps[0], range: range ?? h.pool, grantee: h.ids[j ?? i].nodeID,
                      kind: .merge, extraParents: Array(ps.dropFirst()))
        g.sign(with: h.auths[i])
        return g
    }

    func range(_ a: UInt32, _ b: UInt32) -> AddressRange { AddressRange(h.pool.first + a, h.pool.first + b) }

    /// Node 0 gives node 1 three scattered stretches; node 1 leases one address from the
    /// first to node 2. The grants by which node 1 holds space, and the lease.
    func scattered() -> (grants: [Grant], shares: [Grant], lease: Grant) {
        let gen = genesis()
        let shares = [grant(by: 0, seq: 1, parent: gen.ref, range: range(0, 9), to: 1),
                      grant(by: 0, seq: 2, parent: gen.ref, range: range(20, 29), to: 1),
                      grant(by: 0, seq: 3, parent: gen.ref, range: range(40, 49), to: 1)]
        let lease = grant(by: 1, seq: 1, parent: shares[0].ref, range: range(5, 5), to: 2, kind: .lease)
        return ([gen] + shares + [lease], shares, lease)
    }

    @Test func aMergeHoldsWhatItsParentsStillHeldAndCheckpointsKeepOneHolding() {
        let (base, shares, lease) = scattered()
        let m = merge(by: 1, seq: 2, shares.map(\.ref))
        var v = h.view(of: base + [m])
        let mine = v.freeSpace(of: h.ids[1].nodeID)
        #expect(mine.allSatisfy { $0.grant == m.ref }, "node 1 holds its space by the merge")
        #expect(mine.map(\.range) == [range(0, 4), range(6, 9), range(20, 29), range(40, 49)])
        #expect(v.leases(of: h.ids[2].nodeID).first?.grant == lease.ref, "the lease stands")
        // A grant from the merge takes only what it holds, wherever its range lies.
        let onward = grant(by: 1, seq: 3, parent: m.ref, range: range(8, 22), to: 0)
        #expect(v.insert(onward) == .added)
        #expect(v.freeSpace(of: h.ids[0].nodeID).filter { $0.grant == onward.ref }.map(\.range) == [range(8, 9), range(20, 22)])
        #expect(v.ownership() == v.fold(skipping: nil))
        // The checkpoint keeps the merge, the lease, the grant onward and the genesis's rest:
        // none of the three shares (they hold nothing of their own).
        guard case .success(let cp) = v.checkpoint(cut: v.closedCut()) else {
            Issue.record("no checkpoint")
            return
        }
        #expect(Set(cp.holdings.map(\.ref)) == [base[0].ref, m.ref, lease.ref, onward.ref])
        guard case .success(var built) = v.built(on: cp) else {
            Issue.record("the view does not take its own checkpoint")
            return
        }
        #expect(built.ownership() == v.ownership())
        // Grants after it still name the merge as their parent.
        let later = grant(by: 1, seq: 4, parent: m.ref, range: range(45, 45), to: 2, kind: .lease)
        #expect(built.insert(later) == .added)
        #expect(built.owner(of: range(45, 45).first)?.grant == later.ref)
    }

    @Test func aMergeTakesNothingGivenBeforeItAndItsOwnersLaterGrantsFromAParentTakeNothing() {
        let (base, shares, _) = scattered()
        let before = grant(by: 1, seq: 2, parent: shares[1].ref, range: range(20, 21), to: 0)
        let m = merge(by: 1, seq: 3, shares.map(\.ref))
        let after = grant(by: 1, seq: 4, parent: shares[2].ref, range: range(40, 41), to: 0)
        var v = h.view(of: base + [before, m, after])
        #expect(v.owner(of: range(20, 20).first)?.grant == before.ref)
        #expect(v.owner(of: range(40, 40).first)?.grant == m.ref, "the merge came first: a later grant from a parent gets nothing")
        #expect(v.ownership() == v.fold(skipping: nil))
    }

    @Test func malformedMergesAreRefusedAndChangeNothing() {
        let (base, shares, lease) = scattered()
        var v = h.view(of: base)
        let before = v.ownership()
        let refs = shares.map(\.ref)
        let cases: [(Grant, String)] = [
            (merge(by: 1, seq: 2, refs, to: 2), "a merge must go to its signer"),
            (merge(by: 1, seq: 2, refs, range: range(0, 49)), "a merge's range must be the whole pool"),
            (merge(by: 1, seq: 2, [refs[0]]), "a merge must have 2 to \(Grant.mergeLimit) parents"),
            (merge(by: 1, seq: 2, [refs[0], refs[0]]), "a merge's parents must be distinct and in increasing order"),
            (merge(by: 1, seq: 2, refs.sorted().reversed(), sorted: false), "a merge's parents must be distinct and in increasing order"),
            (merge(by: 1, seq: 2, [refs[0], base[0].ref]), "its grantor does not hold every parent"),
        ]
        for (g, why) in cases { #expect(v.insert(g) == .rejected(why)) }
        #expect(v.counters.badChains == cases.count)
        #expect(v.ownership() == before, "nothing refused changed the view")
        // A lease cannot be merged, even by its holder (it is released whole, as space).
        let space = grant(by: 0, seq: 4, parent: base[0].ref, range: range(60, 69), to: 2)
        #expect(v.insert(space) == .added)
        #expect(v.insert(merge(by: 2, seq: 1, [lease.ref, space.ref])) == .rejected("a lease cannot be merged"))
    }

    @Test func aMergeWaitsForEveryParentInAnyOrder() {
        let (base, shares, lease) = scattered()
        let m = merge(by: 1, seq: 2, shares.map(\.ref))
        let child = grant(by: 1, seq: 3, parent: m.ref, range: range(25, 26), to: 2)
        var reference = h.view(of: base + [m, child])
        let expected = reference.ownership()
        var rng = SeededRandom(seed: 3)
        for _ in 0..<12 {
            var order = base + [m, child]
            order.shuffle(using: &rng)
            var v = h.makeView()
            for g in order { v.insert(g) }
            #expect(v.orphanCount == 0)
            #expect(v.ownership() == expected)
            #expect(v.holds(m) && v.holds(lease))
        }
        // While a parent is missing, the merge is held (as waiting) and a copy is a duplicate.
        var v = h.view(of: [base[0], shares[0], m])
        #expect(v.orphanCount == 1 && v.holds(m))
        #expect(v.insert(m) == .duplicate)
        v.insert(shares[2])
        #expect(v.orphanCount == 1, "still waits for the last parent")
        v.insert(shares[1])
        #expect(v.orphanCount == 0 && v.grants[m.ref] != nil)
    }

    @Test func aMergeCrossesTheWireAndAMalformedOneIsRefused() throws {
        let (_, shares, _) = scattered()
        let m = merge(by: 1, seq: 2, shares.map(\.ref))
        var w = WireWriter()
        m.encode(to: &w)
        #expect(w.bytes.count == m.encodedSize)
        var r = WireReader(w.bytes)
        let back = try Grant(from: &r)
        #expect(back == m && back.extraParents == m.extraParents)
        // One parent only (no extra parents) is not a merge.
        var one = w.bytes
        one[113] = 0  // the count of extra parents, after the fixed fields
        var r1 = WireReader(one)
        #expect(throws: WireError.self) { _ = try Grant(from: &r1) }
        for n in stride(from: 0, to: w.bytes.count, by: 7) {
            var t = WireReader(Array(w.bytes.prefix(n)))
            #expect(throws: WireError.self) { _ = try Grant(from: &t) }
        }
    }
}
