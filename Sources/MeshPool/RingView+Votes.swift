import MeshCore

/// Weighing reclaim votes: what each voter held at its vote, read from the view's fold
/// rewound to the votes (see docs/pool.md, "Reclaim", 3).
extension RingView {
    public enum VoteWeight: Equatable, Sendable {
        case weight(RangeSet)
        /// This view lacks some of a voter's grants up to its vote: weighed later.
        case incomplete(NodeID)
    }

    /// What the votes' signers held when they voted, read from this view: the fold rewound,
    /// for each signer, to its vote (its own grants with a higher seq left out, and any
    /// reclaim of what it held made after it), so that what a voter granted onward since,
    /// or lost later, still counts, and the weight a reclaim was made with is the weight
    /// every node computes from the same grants, at any later time. Each voter's grants up
    /// to its vote must all be here (a node's grant seqs run without gaps); otherwise the
    /// weight is not known yet. A key that never held space weighs nothing.
    public mutating func voteWeight(_ votes: [ReclaimVote]) -> VoteWeight {
        switch voteHoldings(votes) {
        case .failure(let e): return .incomplete(e.signer)
        // One sort and merge of every voter's ranges (not a union per voter).
        case .success(let by): return .weight(RangeSet(by.values.flatMap(\.ranges)))
        }
    }

    public struct IncompleteHistory: Error, Equatable, Sendable { public var signer: NodeID }

    /// What each vote's signer held at its vote (one rewound fold for all of them).
    public mutating func voteHoldings(_ votes: [ReclaimVote]) -> Result<[NodeID: RangeSet], IncompleteHistory> {
        var at: [NodeID: UInt64] = [:]
        // A vote below its signer's mark is weighed at the mark: a view on a checkpoint
        // cannot rewind past it (docs/pool.md, "History compaction").
        for v in votes { at[v.signer] = Swift.max(v.seq, insideSeq[v.signer] ?? 0) }
        for (signer, seq) in at where seq > 0 {
            if (byGrantor[signer]?.contiguousSeq ?? 0) < seq { return .failure(IncompleteHistory(signer: signer)) }
        }
        let all = grants, roots = holdings
        let skip: (Grant) -> Bool = { g in
            if let v = at[g.grantor], g.seq > v { return true }
            if g.kind == .reclaim, let target = (all[g.parent]?.grantee ?? roots[g.parent]?.grantee), let v = at[target], g.cutoff >= v { return true }
            return false
        }
        // What the rewind leaves out: voters' grants above their votes, and reclaims of
        // voters' holdings at or above their votes. Leaving out a grant changes the fold
        // only under its parent, so only the subtrees of their parents are folded again.
        var parents = Set<Bytes32>()
        for (signer, v) in at {
            for g in byGrantor[signer]?.grants ?? [] where g.seq > v {
                for p in g.allParents where all[p] != nil || holdings[p] != nil { parents.insert(p) }
            }
        }
        for ref in reclaimRefs {
            if let g = all[ref], skip(g) { parents.insert(g.parent) }
        }
        let current = ownership()
        var held: [NodeID: RangeSet] = [:]
        // Usually nothing is rewound (no voter signed anything after its vote, and nothing
        // reclaimed from a voter since): the current fold, cached, says it.
        guard !parents.isEmpty else {
            for o in current where at[o.owner] != nil { held[o.owner, default: RangeSet()].insert(o.range) }
            return .success(held)
        }
        // Folded again under those parents (`refold`): above them, the rewound fold is the
        // current one.
        var table = effective
        let (stretches, refolded) = refold(parents, skipping: skip, table: &table, record: false)
        for o in Self.outside(current, refolded) where at[o.owner] != nil { held[o.owner, default: RangeSet()].insert(o.range) }
        for o in stretches where at[o.owner] != nil { held[o.owner, default: RangeSet()].insert(o.range) }
        return .success(held)
    }

    /// `voteHoldings` by one whole rewound fold: the definition, which the property tests
    /// hold the local refold to.
    mutating func voteHoldingsByWholeFold(_ votes: [ReclaimVote]) -> [NodeID: RangeSet] {
        var at: [NodeID: UInt64] = [:]
        // A vote below its signer's mark is weighed at the mark: a view on a checkpoint
        // cannot rewind past it (docs/pool.md, "History compaction").
        for v in votes { at[v.signer] = Swift.max(v.seq, insideSeq[v.signer] ?? 0) }
        let all = grants, roots = holdings
        let rewound = fold(skipping: { g in
            if let v = at[g.grantor], g.seq > v { return true }
            if g.kind == .reclaim, let target = (all[g.parent]?.grantee ?? roots[g.parent]?.grantee), let v = at[target], g.cutoff >= v { return true }
            return false
        })
        var held: [NodeID: RangeSet] = [:]
        for o in rewound where at[o.owner] != nil { held[o.owner, default: RangeSet()].insert(o.range) }
        return held
    }
}
