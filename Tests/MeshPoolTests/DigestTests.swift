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
        // Nor does answering a digest send it (it may never attach anywhere).
        var out: [PoolAgent.Output] = []
        member.answerDigest(from: id[1], session: 1, reply: true, last: true, lo: 0, hi: .max,
                            entries: leaver.grantorDigests().map(\.digest), &out)
        #expect(out.isEmpty, "\(out)")
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
