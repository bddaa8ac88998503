import MeshCore
@testable import MeshPool
import MeshCrypto
import Testing

/// What anti-entropy digests count (docs/pool.md, "Anti-entropy").
@Suite struct DigestTests {
    let h = History(seed: 94, nodes: 3, steps: 0)
    var id: [NodeID] { h.ids.map(\.nodeID) }

    /// A grant whose parent is in no view at hand (here a made-up ref; in a long run, a
    /// grant inside a checkpoint's cut that held nothing there).
    func orphan(seq: UInt64) -> Grant {
        var g = Grant(grantor: id[2], seq: seq, parent: Bytes32(Array(repeating: UInt8(seq), count: 32))!,
                      range: AddressRange(h.pool.first, h.pool.first), grantee: id[1], kind: .space)
        g.sign(with: h.auths[2])
        return g
    }

    /// A digest counts attached grants only: an orphan (kept, and its grantor's highest seq
    /// noted) is not listed until it attaches. Counted, it made members' digests list what a
    /// leaver on the same checkpoint never held, and leavers waited out the release wait
    /// (`sim pool --nodes 40 --cycles 10000`, from 1,105 s simulated).
    @Test func aDigestCountsAttachedGrantsOnly() {
        var member = PoolAgent(me: id[0], view: h.makeView(), auth: h.auths[0], seq: 0, seed: 1, now: .zero)
        _ = member.createGenesis()
        var leaver = PoolAgent(me: id[1], view: h.makeView(), auth: h.auths[1], seq: 0, fresh: false, seed: 2, now: .zero)
        for g in member.view.allGrants { leaver.view.insert(g) }
        #expect(member.view.insert(orphan(seq: 7)) == .orphan)
        let entry = member.grantorDigests().first { $0.grantor == id[2] }?.digest
        #expect(entry?.count == 0 && entry?.xor == 0 && entry?.maxSeq == 7, "\(String(describing: entry))")
        // The other view lacks the orphan, yet holds all the member's digest counts.
        leaver.noteHeard(id[0], member.grantorDigests().map(\.digest))
        #expect(leaver.syncedPeers() == [id[0]])
        // Nor is it passed on, though the peer's highest seq is lower: one that never attaches
        // came back to every view after every checkpoint (`sim pool --nodes 40 --cycles
        // 10000`), and a peer holding its parent gets it from a view it attached in.
        #expect(sent(by: &member, answering: leaver).isEmpty)
        #expect(leaver.syncedPeers() == [id[0]])
    }

    /// The grants `a` sends answering `b`'s digest.
    func sent(by a: inout PoolAgent, answering b: PoolAgent) -> [Grant] {
        var out: [PoolAgent.Output] = []
        a.answerDigest(from: b.me, session: 1, reply: true, last: true, lo: 0, hi: .max, entries: b.grantorDigests().map(\.digest), &out)
        return out.flatMap { o -> [Grant] in
            if case .send(let p, _) = o, case .grants(let gs) = p.message { return gs }
            return []
        }
    }

    /// Two views with as many attached grants of a grantor and the same highest seq, but not
    /// the same ones (here one holds seq 2, the other seq 3, which waits in the first for a
    /// parent only the second holds): the XOR differs, and grants above the peer's highest
    /// seq (none) cannot explain it, so all of that grantor's go. (Sending only those above
    /// it, as before, sent nothing, and the two never met.)
    @Test func sameCountsOtherGrantsStillMeet() {
        func signed(_ g: Grant, by i: Int) -> Grant { var g = g; g.sign(with: h.auths[i]); return g }
        let gen = signed(Grant(grantor: id[0], seq: 0, parent: .zero, range: h.pool, grantee: id[0], kind: .space), by: 0)
        let low = AddressRange(h.pool.first, h.pool.first + 99), high = AddressRange(h.pool.first + 100, h.pool.first + 199)
        let share = signed(Grant(grantor: id[0], seq: 1, parent: gen.ref, range: low, grantee: id[2], kind: .space), by: 0)
        let share2 = signed(Grant(grantor: id[0], seq: 2, parent: gen.ref, range: high, grantee: id[2], kind: .space), by: 0)
        let x1 = signed(Grant(grantor: id[2], seq: 1, parent: share.ref, range: AddressRange(low.first, low.first + 9), grantee: id[1], kind: .space), by: 2)
        let x2 = signed(Grant(grantor: id[2], seq: 2, parent: share.ref, range: AddressRange(low.first + 10, low.first + 19), grantee: id[1], kind: .space), by: 2)
        let x3 = signed(Grant(grantor: id[2], seq: 3, parent: share2.ref, range: AddressRange(high.first, high.first + 9), grantee: id[1], kind: .space), by: 2)
        var a = PoolAgent(me: id[0], view: h.makeView(), auth: h.auths[0], seq: 0, seed: 1, now: .zero)
        var b = PoolAgent(me: id[1], view: h.makeView(), auth: h.auths[1], seq: 0, seed: 2, now: .zero)
        for g in [gen, share, x1, x2, x3] { a.view.insert(g) }
        for g in [gen, share, share2, x1, x3] { b.view.insert(g) }
        #expect(a.view.orphanCount == 1)
        let da = a.grantorDigests().first { $0.grantor == id[2] }!.digest, db = b.grantorDigests().first { $0.grantor == id[2] }!.digest
        #expect(da.count == 2 && db.count == 2 && da.maxSeq == 3 && db.maxSeq == 3 && da.xor != db.xor)
        #expect(sent(by: &a, answering: b).contains(x2))
        #expect(sent(by: &b, answering: a).contains(share2))
    }

    /// Once its parent comes, the orphan is counted, with the same count and XOR as in a
    /// view that took the two in order.
    @Test func anOrphanIsCountedOnceItAttaches() {
        var v = h.makeView()
        var inOrder = h.makeView()
        var gen = Grant(grantor: id[0], seq: 0, parent: .zero, range: h.pool, grantee: id[0], kind: .space)
        gen.sign(with: h.auths[0])
        var share = Grant(grantor: id[0], seq: 1, parent: gen.ref, range: h.pool, grantee: id[2], kind: .space)
        share.sign(with: h.auths[0])
        var onward = Grant(grantor: id[2], seq: 1, parent: share.ref, range: AddressRange(h.pool.first, h.pool.first + 3),
                           grantee: id[1], kind: .space)
        onward.sign(with: h.auths[2])
        #expect(v.insert(gen) == .added)
        #expect(v.insert(onward) == .orphan)
        #expect(v.byGrantor[id[2]]?.attachedCount == 0 && v.byGrantor[id[2]]?.grants.count == 1)
        #expect(v.insert(share) == .added)
        for g in [gen, share, onward] { inOrder.insert(g) }
        #expect(v.byGrantor[id[2]]?.attachedCount == 1)
        #expect(v.byGrantor[id[2]]?.xor == inOrder.byGrantor[id[2]]?.xor && v.byGrantor[id[2]]?.xor != 0)
        #expect(v.byGrantor[id[0]]?.attachedCount == 2)
    }
}
