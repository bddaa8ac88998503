import MeshCore
import MeshCrypto
@testable import MeshPool
import Testing

/// Spent grants (docs/pool.md, "Spent grants"): a grant inside a checkpoint's cut that is
/// none of its holdings holds nothing, and neither does what it gets later; a merge takes
/// nothing from it, and the rest from its other parents.
@Suite struct SpentTests {
    let h = History(seed: 31, nodes: 3, steps: 0)

    func grant(by i: Int, seq: UInt64, parent: Bytes32, range: AddressRange, to j: Int, kind: Grant.Kind = .space) -> Grant {
        var g = Grant(grantor: h.ids[i].nodeID, seq: seq, parent: parent, range: range, grantee: h.ids[j].nodeID, kind: kind)
        g.sign(with: h.auths[i])
        return g
    }

    func range(_ a: UInt32, _ b: UInt32) -> AddressRange { AddressRange(h.pool.first + a, h.pool.first + b) }

    /// Node 0 gives node 1 two stretches, p and q; node 1 gives all of p to node 2 (so p
    /// holds nothing at a cut that takes these in). Then node 1, on a view that did not
    /// know it had, grants from p again (`late`, and node 2 onward from that, `under`),
    /// merges p with q (`merge`), and leases from the merge.
    struct Story {
        var early: [Grant]
        var p: Grant
        var late: Grant
        var under: Grant
        var merge: Grant
        var lease: Grant
        var cut: [NodeID: UInt64]
        var all: [Grant] { early + [late, under, merge, lease] }
    }

    func story() -> Story {
        let gen = h.genesisGrant()
        let p = grant(by: 0, seq: 1, parent: gen.ref, range: range(0, 9), to: 1)
        let q = grant(by: 0, seq: 2, parent: gen.ref, range: range(20, 29), to: 1)
        let all = grant(by: 1, seq: 1, parent: p.ref, range: range(0, 9), to: 2)
        let late = grant(by: 1, seq: 2, parent: p.ref, range: range(0, 4), to: 2)
        let under = grant(by: 2, seq: 1, parent: late.ref, range: range(0, 0), to: 0)
        let parents = [p.ref, q.ref].sorted()
        var merge = Grant(grantor: h.ids[1].nodeID, seq: 3, parent: parents[0], range: h.pool, grantee: h.ids[1].nodeID,
                          kind: .merge, extraParents: [parents[1]])
        merge.sign(with: h.auths[1])
        let lease = grant(by: 1, seq: 4, parent: merge.ref, range: range(25, 25), to: 2, kind: .lease)
        return Story(early: [gen, p, q, all], p: p, late: late, under: under, merge: merge, lease: lease,
                     cut: [h.ids[0].nodeID: 2, h.ids[1].nodeID: 1])
    }

    /// Late grants under p come to a view on the checkpoint: refused as spent (counted, not
    /// kept waiting for a parent no view holds), whether p came before them or after; the
    /// merge and the lease under it attach. The fold is the whole history's.
    @Test(arguments: [false, true])
    func whatComesUnderASpentGrantIsRefusedNotKeptWaiting(parentFirst: Bool) throws {
        let s = story()
        var whole = h.view(of: s.all)
        var early = h.view(of: s.early)
        let cp = try early.checkpoint(cut: s.cut).get()
        #expect(!cp.holdings.contains { $0.ref == s.p.ref }, "p holds nothing at the cut")
        var v = try early.built(on: cp).get()
        let order = parentFirst ? [s.p, s.late, s.under, s.merge, s.lease] : [s.late, s.under, s.merge, s.lease, s.p]
        for g in order { v.insert(g) }
        #expect(v.orphanCount == 0)
        #expect(v.counters.spent == 2, "late and under: \(v.counters)")
        #expect(v.grants[s.merge.ref] != nil && v.grants[s.lease.ref] != nil)
        #expect(v.ownership() == whole.ownership())
        #expect(v.owner(of: s.lease.range.first)?.owner == h.ids[2].nodeID)
        // Held (sent to a member that lacks them), not counted, and their seqs are known: a
        // cut may pass them.
        let one = try #require(v.byGrantor[h.ids[1].nodeID])
        #expect(one.grants.contains(s.late) && one.attachedCount == 2 && one.contiguousSeq == 4)
        #expect(v.byGrantor[h.ids[2].nodeID]?.contiguousSeq == 1)
    }

    /// A view that held the late grants when it moved onto the checkpoint sets p aside
    /// itself: nothing is left waiting, the fold is the whole history's, and a restart from
    /// what it keeps (p goes with it, named by the merge) folds the same.
    @Test func aViewMovingOntoACheckpointSetsAsideWhatItLeftNothing() throws {
        let s = story()
        var whole = h.view(of: s.all)
        let cp = try whole.checkpoint(cut: s.cut).get()
        var built = try whole.built(on: cp).get()
        #expect(built.orphanCount == 0)
        #expect(built.ownership() == whole.ownership())
        #expect(built.allGrants.contains(s.p), "the merge names p: kept with the grants")
        #expect(built.withSpentParents([s.merge]) == [s.p, s.merge], "sent before the merge that names it")
        var restored = RingView.restored(pool: h.pool, genesis: h.ids[0].nodeID, admin: nil, auth: built.auth, base: cp,
                                         grants: built.allGrants.shuffled())
        #expect(restored.orphanCount == 0)
        #expect(restored.ownership() == whole.ownership())
        // The next cut passes the spent grant, and takes in the merge and the lease: p is no
        // longer named, nor kept.
        let cut = built.closedCut()
        #expect(cut[h.ids[1].nodeID] == 4)
        let next = try built.checkpoint(cut: cut).get()
        var after = try built.built(on: next).get()
        #expect(after.grantCount == 0 && after.orphanCount == 0 && !after.allGrants.contains(s.p))
        #expect(after.ownership() == whole.ownership())
    }
}
