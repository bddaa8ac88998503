import MeshCore

/// History compaction: making a checkpoint of a view at a cut, checking one by folding,
/// and building a view on it (docs/pool.md, "History compaction").
extension RingView {
    public enum CheckpointProblem: Error, Equatable, Sendable, CustomStringConvertible {
        /// Not the next checkpoint after this view's base.
        case notNext(have: UInt64, got: UInt64)
        /// The view has no root yet.
        case noRoot
        /// A grant inside the cut whose parent is outside it (or not here).
        case notClosed
        /// This view folds the cut to other holdings (it lacks or holds other grants).
        case differs
        /// Holdings that do not tile the pool exactly.
        case malformed(String)

        public var description: String {
            switch self {
            case .notNext(let have, let got): return "checkpoint \(got) does not follow this view's \(have)"
            case .noRoot: return "the view has no genesis grant or checkpoint yet"
            case .notClosed: return "a grant inside the cut has its parent outside it"
            case .differs: return "this view folds the cut differently"
            case .malformed(let why): return why
            }
        }
    }

    /// The largest cut this view can take (within `limit`, if given): per grantor, the
    /// highest seq up to which all its grants are attached here (and, with `settled`, pass
    /// it), lowered until every grant inside has its parent inside (or is a root).
    public func closedCut(within limit: [NodeID: UInt64]? = nil, settled: ((Grant) -> Bool)? = nil) -> [NodeID: UInt64] {
        var cut: [NodeID: UInt64] = [:]
        for (id, st) in byGrantor {
            var c = st.contiguousSeq
            if let limit { c = min(c, max(limit[id] ?? 0, insideSeq[id] ?? 0)) }
            if let settled {
                for g in st.grants where g.seq <= c && !g.isGenesis && !settled(g) { c = min(c, g.seq - 1) }
            }
            cut[id] = c
        }
        // Lower until closed: a grant whose parent lies outside, or which comes after a
        // sibling outside, takes its grantor's mark below it; a reclaim left outside takes each voter's mark down to its vote and its
        // target's to its cutoff (a view on the checkpoint could not weigh or order it
        // otherwise). Marks only fall, so this ends.
        func lower(_ id: NodeID, to seq: UInt64) -> Bool {
            guard let c = cut[id], c > seq else { return false }
            cut[id] = seq
            return true
        }
        func inside(_ g: Grant) -> Bool { g.isGenesis || g.seq <= (cut[g.grantor] ?? 0) }
        let pending = pendingReclaims
        var changed = true
        while changed {
            changed = false
            for g in grants.values where !g.isGenesis && inside(g) && !parentsInside(g, inside) {
                changed = lower(g.grantor, to: g.seq - 1) || changed
            }
            // Among siblings, every grant inside must come before every grant outside in
            // fold order (a reclaim sits at its cutoff): then the stretches at the cut, and
            // the grants after it, fold as the whole history does.
            for kids in children.values {
                var outsideSeen = false
                for k in kids {
                    guard let g = grants[k.ref] else { continue }
                    if !inside(g) { outsideSeen = true } else if outsideSeen { changed = lower(g.grantor, to: g.seq - 1) || changed }
                }
            }
            for r in grants.values.filter({ $0.kind == .reclaim && !inside($0) }) + pending {
                for v in r.votes { changed = lower(v.signer, to: v.seq) || changed }
                if let target = holder(of: r.parent)?.grantee { changed = lower(target, to: r.cutoff) || changed }
            }
        }
        return cut
    }

    /// The checkpoint of this view at `cut` (per grantor, the highest seq inside), or why
    /// not: the fold of the grants inside, as holdings. Numbered after the base.
    public mutating func checkpoint(cut: [NodeID: UInt64]) -> Result<PoolCheckpoint, CheckpointProblem> {
        guard hasGenesis else { return .failure(.noRoot) }
        func inside(_ g: Grant) -> Bool { g.isGenesis || cut[g.grantor].map { g.seq <= $0 } ?? false }
        var active = Set<NodeID>()
        for g in grants.values where inside(g) {
            if !g.isGenesis { active.insert(g.grantor) }
            guard g.isGenesis || parentsInside(g, inside) else { return .failure(.notClosed) }
        }
        var held: [Bytes32: [AddressRange]] = [:]
        for o in fold(skipping: { !inside($0) }) { held[o.grant, default: []].append(o.range) }
        let hs = held.map { ref, rs in PoolCheckpoint.Holding(ref: ref, grant: parentGrant(ref)!, held: RangeSet(rs)) }
        // Marks: every grantor with grants inside (their late copies are then known as
        // inside), and every holder (its later grants are children of its holdings, and its
        // seqs up to the mark count as known when its votes are weighed).
        var marks: [NodeID: UInt64] = [:]
        for id in active { marks[id] = cut[id] ?? 0 }
        for h in hs where marks[h.grantee] == nil {
            let m = max(cut[h.grantee] ?? 0, insideSeq[h.grantee] ?? 0)
            if m > 0 { marks[h.grantee] = m }
        }
        return .success(PoolCheckpoint(number: (base?.number ?? 0) + 1, previous: base?.ref ?? .zero,
                                       marks: marks.map { PoolCheckpoint.Mark(grantor: $0.key, seq: $0.value) }, holdings: hs))
    }

    /// Whether every parent of `g` is a root or a grant `inside` the cut.
    func parentsInside(_ g: Grant, _ inside: (Grant) -> Bool) -> Bool {
        func ok(_ p: Bytes32) -> Bool { holdings[p] != nil || spent[p] != nil || (grants[p].map(inside) ?? false) }
        return g.kind == .merge ? g.allParents.allSatisfy(ok) : ok(g.parent)
    }

    /// Reclaims this view holds but has not made: waiting for votes' weight, or orphans.
    var pendingReclaims: [Grant] {
        Array(waitingReclaims.values) + orphans.values.flatMap { $0 }.filter { $0.kind == .reclaim }
    }

    /// This view built on `cp`, which must be the next checkpoint after its base and the
    /// fold of its own grants at `cp`'s cut (checked by folding them: the signatures are
    /// not looked at). Grants inside the cut are dropped; the rest are kept.
    public mutating func built(on cp: PoolCheckpoint) -> Result<RingView, CheckpointProblem> {
        if let problem = foldProblem(cp) { return .failure(problem) }
        return .success(rebuilt(on: cp))
    }

    /// Why this view would not build on `cp` as the next checkpoint (`built(on:)`), without
    /// building it: what a member checks before it signs a proposal.
    public mutating func foldProblem(_ cp: PoolCheckpoint) -> CheckpointProblem? {
        let have = base?.number ?? 0
        guard cp.number == have + 1, cp.previous == (base?.ref ?? .zero) else { return .notNext(have: have, got: cp.number) }
        let cut = cp.insideSeq
        if crossesReclaim(cut) { return .notClosed }
        switch checkpoint(cut: cut) {
        case .failure(let e): return e
        case .success(let mine): return mine.marks == cp.marks && mine.holdings == cp.holdings ? nil : .differs
        }
    }

    /// Whether a reclaim this view holds (made, or waiting) lies outside `cut` while its
    /// target's mark lies above its cutoff, or a voter's above its vote: on a view built on
    /// such a cut it would be refused or weighed otherwise. A proposer that knew of it would
    /// have lowered the cut (`closedCut`); one that did not leaves a cut this view must not
    /// sign or fold.
    func crossesReclaim(_ cut: [NodeID: UInt64]) -> Bool {
        for r in grants.values.filter({ $0.kind == .reclaim }) + pendingReclaims where r.seq > (cut[r.grantor] ?? 0) {
            if let target = holder(of: r.parent)?.grantee, (cut[target] ?? 0) > r.cutoff { return true }
            if r.votes.contains(where: { (cut[$0.signer] ?? 0) > $0.seq }) { return true }
        }
        return false
    }

    /// This view moved onto `cp`, a later checkpoint than its base (not necessarily the
    /// next: one made elsewhere while this node was away), if this view folds the same
    /// holdings at `cp`'s cut and `cp`'s cut takes in all of this view's (for each grantor
    /// both mark, `cp`'s mark is not below this base's).
    public mutating func built(onLater cp: PoolCheckpoint) -> Result<RingView, CheckpointProblem> {
        let have = base?.number ?? 0
        guard cp.number > have else { return .failure(.notNext(have: have, got: cp.number)) }
        let theirs = cp.insideSeq
        for (id, mark) in insideSeq where (theirs[id] ?? mark) < mark { return .failure(.differs) }
        if crossesReclaim(theirs) { return .failure(.notClosed) }
        switch checkpoint(cut: theirs) {
        case .failure(let e): return .failure(e)
        case .success(let mine): guard mine.holdings == cp.holdings else { return .failure(.differs) }
        }
        return .success(rebuilt(on: cp))
    }

    /// A view with nothing but `cp`, taken on trust, checking only that it is well formed:
    /// holdings inside their ranges that tile the pool exactly. (What a node that holds
    /// nothing can check; docs/pool.md says what that trusts.)
    public func trusting(_ cp: PoolCheckpoint) -> Result<RingView, CheckpointProblem> {
        if let why = Self.shapeProblem(cp, pool: pool) { return .failure(.malformed(why)) }
        return .success(RingView(pool: pool, genesis: genesis, admin: admin, auth: auth, base: cp))
    }

    static func shapeProblem(_ cp: PoolCheckpoint, pool: AddressRange) -> String? {
        var pieces: [AddressRange] = []
        for h in cp.holdings {
            guard !h.held.isEmpty else { return "a holding that holds nothing" }
            guard RangeSet(h.range).subtracting(h.held).count == h.range.count - h.held.count else {
                return "a holding holds addresses outside its grant's range"
            }
            pieces += h.held.ranges
        }
        pieces.sort()
        var next = UInt64(pool.first)
        for p in pieces {
            guard UInt64(p.first) == next else { return "the holdings do not tile the pool: a gap or an overlap at \(AddressRange(p.first, p.first))" }
            next = UInt64(p.last) + 1
        }
        guard next == UInt64(pool.last) + 1 else { return "the holdings do not cover the whole pool" }
        return nil
    }

    /// A view on `cp` holding this view's grants that lie outside its cut.
    func rebuilt(on cp: PoolCheckpoint) -> RingView {
        var v = RingView(pool: pool, genesis: genesis, admin: admin, auth: auth, base: cp)
        v.inherit(counters)
        v = spentCarried(into: v, at: cp)
        // Orphans are left behind: one whose parent is only late comes again with anti-
        // entropy; one under a grant spent here would not attach (nor hold anything).
        return v.rebuiltWith(Array(grants.values) + waitingReclaims.values)
    }

    /// This view with `grants` taken in as well (those inside its base's cut are dropped).
    public func rebuiltWith(_ grants: [Grant]) -> RingView {
        var v = self
        // Reclaims last, and again while that takes any in: a reclaim weighed before the
        // grants its voters' weight rests on were in is refused (or, waiting for a voter's
        // grants, weighed again and refused), and taken once they are.
        var rest = grants.sorted {
            ($0.kind == .reclaim ? 1 : 0, $0.grantor, $0.seq, $0.ref) < ($1.kind == .reclaim ? 1 : 0, $1.grantor, $1.seq, $1.ref)
        }
        while !rest.isEmpty {
            let before = rest.count
            for g in rest { v.insert(g) }
            rest = rest.filter { g in g.kind == .reclaim && !v.holds(g) }
            if rest.count == before { break }
        }
        return v
    }

    /// A view restored from disk: on `base` if there is one, with `grants` taken in.
    public static func restored(pool: AddressRange, genesis: NodeID, admin: NodeID?, auth: any RecordAuthenticator,
                                base: PoolCheckpoint?, grants: [Grant]) -> RingView {
        let v = base.map { RingView(pool: pool, genesis: genesis, admin: admin, auth: auth, base: $0) }
            ?? RingView(pool: pool, genesis: genesis, admin: admin, auth: auth)
        return v.rebuiltWith(grants)
    }

    /// What the valid signatures of `cp` weigh in this view: what their signers hold in
    /// its fold now (not at `cp`'s cut: in a mesh that churns fast many who held a share at
    /// the cut have left before they could sign, and those who joined since hold theirs now).
    public mutating func signedWeight(_ cp: PoolCheckpoint) -> RangeSet {
        let message = PoolCheckpoint.signedBytes(ref: cp.ref)
        var signers = Set<NodeID>()
        for s in cp.signatures where !signers.contains(s.signer) {
            if auth.verify(signature: s.signature, message: message, signer: s.signer) { signers.insert(s.signer) }
        }
        return RangeSet(ownership().filter { signers.contains($0.owner) }.map(\.range))
    }
}
