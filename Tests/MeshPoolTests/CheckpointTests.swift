import MeshCore
import MeshCrypto
@testable import MeshPool
import MeshSim
import MeshWire
import Testing

/// History compaction (docs/pool.md, "History compaction"): a view built on a checkpoint
/// of a cut, plus the grants outside the cut, must fold exactly as the whole history does,
/// whatever the cut, whatever order the grants come in, and weigh votes as the whole
/// history does. These check that on random signed histories (with conflicting grants)
/// and on whole simulated nodes after a wave of reclaims.
@Suite struct CheckpointTests {
    /// A random cut of `view`: each grantor's mark somewhere in its seqs, then closed.
    static func randomCut(_ view: RingView, rng: inout SeededRandom) -> [NodeID: UInt64] {
        var limit: [NodeID: UInt64] = [:]
        for (id, st) in view.byGrantor.sorted(by: { $0.key < $1.key }) { limit[id] = rng.next() % (st.maxSeq + 2) }
        return view.closedCut(within: limit)
    }

    static func shuffled<T>(_ xs: [T], _ rng: inout SeededRandom) -> [T] {
        var out = xs
        for i in stride(from: out.count - 1, to: 0, by: -1) { out.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return out
    }

    /// The whole view and the view on its checkpoint fold the same; so does a fresh view
    /// on the checkpoint given every grant again, shuffled (those inside are dropped); and
    /// a second checkpoint on the first.
    static func expectCompactionKeepsTheFold(_ whole: inout RingView, rng: inout SeededRandom, _ what: String) {
        let truth = whole.ownership()
        let cut = randomCut(whole, rng: &rng)
        guard case .success(let cp) = whole.checkpoint(cut: cut) else {
            Issue.record("\(what): a closed cut did not make a checkpoint")
            return
        }
        guard case .success(var built) = whole.built(on: cp) else {
            Issue.record("\(what): the view does not accept its own checkpoint")
            return
        }
        #expect(built.ownership() == truth, "\(what): the view on the checkpoint folds differently")
        #expect(built.ownership() == built.fold(skipping: nil), "\(what): kept fold is not the whole fold")
        let inside = whole.allGrants.filter { g in g.isGenesis || cut[g.grantor].map { g.seq <= $0 } ?? false }
        #expect(built.grantCount + inside.count == whole.grantCount, "\(what): a grant outside the cut was not kept")
        guard case .success(var fresh) = whole.trusting(cp) else {
            Issue.record("\(what): a well-formed checkpoint refused on trust")
            return
        }
        // In any order (dictionary order is not fixed: sort first, then shuffle by seed),
        // and again for those refused, as anti-entropy would send them again: a reclaim that
        // came before the grants its voters' weight rests on is refused, then taken.
        var rest = shuffled(whole.allGrants.sorted { $0.ref < $1.ref }, &rng)
        while !rest.isEmpty {
            let before = rest.count
            for g in rest { fresh.insert(g) }
            rest = rest.filter { !fresh.holds($0) }
            if rest.count == before { break }
        }
        #expect(fresh.ownership() == truth, "\(what): grants given again in another order fold differently")
        #expect(fresh.counters.insideCheckpoint == inside.count, "\(what): grants inside the cut not dropped as such")

        // A second checkpoint, on the first: the rest of the history.
        let cut2 = built.closedCut()
        guard case .success(let cp2) = built.checkpoint(cut: cut2), case .success(var built2) = built.built(on: cp2) else {
            Issue.record("\(what): no second checkpoint")
            return
        }
        #expect(cp2.number == cp.number + 1 && cp2.previous == cp.ref, "\(what): the second checkpoint does not follow the first")
        #expect(built2.ownership() == truth, "\(what): the view on the second checkpoint folds differently")
    }

    @Test(arguments: Array(UInt64(1)...12))
    func aViewOnACheckpointFoldsAsTheWholeHistory(seed: UInt64) {
        let h = History(seed: seed, nodes: 6, steps: 150)
        var whole = h.view(of: h.grants)
        var rng = SeededRandom(seed: seed ^ 0xc0c0)
        for k in 0..<6 { Self.expectCompactionKeepsTheFold(&whole, rng: &rng, "seed \(seed), cut \(k)") }
    }

    /// Whole nodes after 40% of a mesh died: reclaims, votes, released leases. The view on
    /// a checkpoint keeps every reclaim outside the cut valid, and weighs votes as the
    /// whole history does (votes at or above each signer's mark, by signers no reclaim
    /// inside the cut took from: the two things a view on a checkpoint cannot rewind).
    @Test(arguments: [UInt64(1), 2, 3])
    func reclaimsAndVotesSurviveACheckpoint(seed: UInt64) {
        var reclaimsChecked = 0
        for var whole in VoteHoldingsTests.viewsAfterAReclaimWave(seed: seed) {
            var rng = SeededRandom(seed: seed ^ 0xbeef)
            Self.expectCompactionKeepsTheFold(&whole, rng: &rng, "seed \(seed)")
            let cut = Self.randomCut(whole, rng: &rng)
            guard case .success(let cp) = whole.checkpoint(cut: cut), case .success(var built) = whole.built(on: cp) else {
                Issue.record("seed \(seed): no checkpoint")
                continue
            }
            let outside = whole.grants.values.filter { g in !g.isGenesis && !(cut[g.grantor].map { g.seq <= $0 } ?? false) }
            for g in outside where g.kind == .reclaim {
                reclaimsChecked += 1
                #expect(built.grants[g.ref] != nil, "seed \(seed): a reclaim outside the cut was refused on the checkpoint")
            }
            let reclaimedInside = Set(whole.grants.values.filter { g in
                g.kind == .reclaim && (cut[g.grantor].map { g.seq <= $0 } ?? false)
            }.compactMap { whole.grants[$0.parent]?.grantee })
            let voters = Set(whole.grants.values.map(\.grantor)).filter { !reclaimedInside.contains($0) }.sorted()
            for _ in 0..<20 {
                let votes = voters.compactMap { v -> ReclaimVote? in
                    guard rng.next() % 2 == 0, let st = built.byGrantor[v] else { return nil }
                    let low = cp.insideSeq[v] ?? 0
                    guard st.contiguousSeq >= low else { return nil }
                    return ReclaimVote(signer: v, seq: low + rng.next() % (st.contiguousSeq - low + 1))
                }
                guard case .success(let onCheckpoint) = built.voteHoldings(votes), case .success(let onWhole) = whole.voteHoldings(votes) else {
                    Issue.record("seed \(seed): votes within the known seqs not weighable")
                    continue
                }
                #expect(onCheckpoint.filter { !$0.value.isEmpty } == onWhole.filter { !$0.value.isEmpty },
                        "seed \(seed): votes \(votes.map { "\($0.signer.fingerprint)@\($0.seq)" }) weigh differently on the checkpoint")
                VoteHoldingsTests.expectSame(&built, votes, "seed \(seed), on the checkpoint")
            }
        }
        #expect(reclaimsChecked > 0, "seed \(seed): no reclaim outside a cut to check")
    }

    @Test func aCheckpointRoundTripsOnTheWireAndNamesItsBody() throws {
        let h = History(seed: 7, nodes: 6, steps: 120)
        var whole = h.view(of: h.grants)
        guard case .success(var cp) = whole.checkpoint(cut: whole.closedCut()) else {
            Issue.record("no checkpoint")
            return
        }
        let ref = cp.ref
        let sig = h.auths[0].sign(PoolCheckpoint.signedBytes(ref: ref))
        cp.signatures = [PoolCheckpoint.Signature(signer: h.ids[0].nodeID, signature: sig)]
        var w = WireWriter()
        cp.encode(to: &w)
        var r = WireReader(w.bytes)
        let back = try PoolCheckpoint(from: &r)
        #expect(back == cp)
        #expect(back.ref == ref, "signatures must not change the ref")
        // Many holdings of one stretch each and no signatures (the smallest encoding).
        let one = PoolCheckpoint.Holding(ref: ref, grant: h.grants[1], held: RangeSet(h.grants[1].range))
        let many = PoolCheckpoint(number: 3, previous: ref, marks: [],
                                  holdings: (0..<300).map { i in var x = one; x.ref = Bytes32(Blake2b.hash([UInt8(i & 0xff), UInt8(i >> 8)], outputLength: 32))!; return x })
        #expect(try PoolCheckpoint(wireBytes: many.wireBytes) == many)
        // A truncated one is an error, not a crash.
        for n in stride(from: 0, to: w.bytes.count, by: max(1, w.bytes.count / 50)) {
            var t = WireReader(Array(w.bytes.prefix(n)))
            #expect(throws: WireError.self) { _ = try PoolCheckpoint(from: &t) }
        }
    }

    /// The compact encoding has one form: node IDs in a sorted table, each named, indices
    /// inside it, held ranges inside the grant's and apart. Anything else is refused.
    @Test func aCheckpointEncodingHasOneFormAndRefusesTheRest() throws {
        let h = History(seed: 11, nodes: 6, steps: 120)
        var whole = h.view(of: h.grants)
        guard case .success(let cp) = whole.checkpoint(cut: whole.closedCut()) else {
            Issue.record("no checkpoint")
            return
        }
        let bytes = cp.wireBytes
        #expect(try PoolCheckpoint(wireBytes: bytes) == cp)
        // Each holding costs about a third of its fixed-width form (ref, two IDs, seq, kind,
        // range: 115 bytes and 8 per range held).
        let fixed = 44 + 40 * cp.marks.count + cp.holdings.reduce(0) { $0 + 115 + 8 * $1.held.ranges.count }
        #expect(bytes.count * 2 < fixed, "\(bytes.count) bytes, \(fixed) in the fixed-width form")
        // The ID table starts after number (8) and previous (32), with its count (one byte here).
        let ids = Int(bytes[40])
        #expect(ids > 1 && ids < 128)
        func refused(_ b: [UInt8], _ what: String) {
            #expect(throws: WireError.self, "\(what)") { _ = try PoolCheckpoint(wireBytes: b) }
        }
        // Two IDs swapped: the table is not sorted.
        var swapped = bytes
        for i in 0..<32 { swapped.swapAt(41 + i, 41 + 32 + i) }
        refused(swapped, "an unsorted ID table")
        // An extra ID nothing names (sorted last: all 0xff).
        var extra = bytes
        extra[40] = UInt8(ids + 1)
        extra.insert(contentsOf: [UInt8](repeating: 0xff, count: 32), at: 41 + 32 * ids)
        refused(extra, "an ID nothing names")
        // A mark naming an index past the table.
        var past = bytes
        let marksAt = 41 + 32 * ids
        #expect(past[marksAt] > 0)
        past[marksAt + 1] = UInt8(ids)
        refused(past, "an index past the table")
        // A holding whose held range lies outside the grant's range.
        var wide = cp
        if let i = wide.holdings.indices.first(where: { wide.holdings[$0].range.last < UInt32.max - 1 }) {
            let r = wide.holdings[i].range
            wide.holdings[i].held = RangeSet(AddressRange(r.first, r.last + 1))
            refused(wide.wireBytes, "held outside the grant's range")
        }
        // Garbage of every short length is an error, never a trap.
        var rng = SeededRandom(seed: 5)
        for n in 0..<200 { refused(rng.bytes(n), "\(n) random bytes") }
    }

    @Test func aViewRefusesACheckpointItDoesNotFoldItself() {
        let h = History(seed: 3, nodes: 6, steps: 120)
        var whole = h.view(of: h.grants)
        guard case .success(let cp) = whole.checkpoint(cut: whole.closedCut()) else {
            Issue.record("no checkpoint")
            return
        }
        // Another owner for one stretch.
        var forged = cp
        forged.holdings[0].grantee = h.ids[5].nodeID == cp.holdings[0].grantee ? h.ids[4].nodeID : h.ids[5].nodeID
        if case .success = whole.built(on: forged) { Issue.record("a checkpoint with another owner was accepted") }
        // Not the next one.
        var skipped = cp
        skipped.number = 2
        #expect(whole.built(on: skipped).failure == .notNext(have: 0, got: 2))
        // A view that lacks a grant inside the cut folds it differently (or not at all).
        var partial = h.view(of: Array(h.grants.dropLast(h.grants.count / 3)))
        if case .success = partial.built(on: cp) { Issue.record("a view lacking grants inside the cut accepted it") }
        // On trust, holdings must tile the pool: one dropped leaves a gap.
        var gap = cp
        gap.holdings.removeLast()
        #expect(whole.trusting(gap).failure.map { if case .malformed = $0 { true } else { false } } == true)
    }

    @Test func signaturesWeighWhatTheirSignersHoldInTheView() {
        let h = History(seed: 5, nodes: 6, steps: 120)
        var whole = h.view(of: h.grants)
        guard case .success(var cp) = whole.checkpoint(cut: whole.closedCut()) else {
            Issue.record("no checkpoint")
            return
        }
        let message = PoolCheckpoint.signedBytes(ref: cp.ref)
        var srng = SeededRandom(seed: 99)
        let stranger = NodeIdentity.generate(using: &srng)
        cp.signatures = h.ids.indices.map { PoolCheckpoint.Signature(signer: h.ids[$0].nodeID, signature: h.auths[$0].sign(message)) }
        cp.signatures.append(PoolCheckpoint.Signature(signer: stranger.nodeID, signature: Ed25519RecordAuthenticator(identity: stranger).sign(message)))
        #expect(whole.signedWeight(cp).count == h.pool.count, "every holder signed: the whole pool")
        // A signature over something else counts nothing; a stranger holds nothing.
        cp.signatures[0].signature = h.auths[0].sign(message + [0])
        let first = h.ids[0].nodeID
        let held = whole.ownership().filter { $0.owner == first }.reduce(UInt64(0)) { $0 + $1.range.count }
        #expect(held > 0)
        #expect(whole.signedWeight(cp).count == h.pool.count - held)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
