import MeshCore

/// Spent grants: grants that hold nothing and never will (docs/pool.md, "Spent grants").
///
/// A grant inside a checkpoint's cut that is none of its holdings held nothing there: its
/// children inside the cut took all it had, or the fold gave it nothing (a conflict lost).
/// A child it gets later sorts after all of those in fold order (its grantor's seq lies
/// above its mark, and no reclaim may cut inside the checkpoint), so it gets nothing either,
/// nor does anything under it; a merge gets nothing from such a parent, and what its other
/// parents give. Members that granted from such a parent on an older view send those
/// grants after the checkpoint. Kept as orphans, they waited for a parent that no view
/// holds, filled the orphan limit, and came back by anti-entropy after every checkpoint
/// (`sim pool --nodes 40 --cycles 10000`: 2,564 in every view).
extension RingView {
    /// At most this many grants are set aside as they arrive between two checkpoints (a
    /// view built on a checkpoint sets aside, beyond it, what its own grants inside the
    /// cut left over).
    public static let spentLimit = 4096

    /// Whether `g` lies inside the base's cut (the spent grants above one such are not
    /// needed to know it for spent: it is known so by its seq).
    func insideBase(_ g: Grant) -> Bool { g.isGenesis || g.seq <= (insideSeq[g.grantor] ?? 0) }

    /// `fresh`, a view on `cp` (built here, or taken on trust), with what this view sets
    /// aside at `cp`, given before it takes in this view's grants: those inside the cut then
    /// cost no signature check and no room.
    func spentCarried(into fresh: RingView, at cp: PoolCheckpoint) -> RingView {
        var v = fresh
        v.spent = spent(at: cp)
        for g in v.spent.values where !cp.holdsInside(g) { v.noteSpent(g, recorded: false) }
        return v
    }

    /// Whether `g` (not a merge) lies under a spent grant: its parent is spent and not live.
    func underSpent(_ g: Grant) -> Bool { g.kind != .merge && parentGrant(g.parent) == nil && spent[g.parent] != nil }

    /// `ref`'s grant: attached, a holding of the base, or spent.
    func parentOrSpent(_ ref: Bytes32) -> Grant? { parentGrant(ref) ?? spent[ref] }

    /// Sets `g` aside as spent, with what waited for it.
    mutating func setAside(_ g: Grant) {
        spent[g.ref] = g
        spentRoom -= 1
        takeOrphans(waitingFor: g.ref)
    }

    /// Refuses `g` (not a merge), whose parent is spent: it is spent too. It is held as its
    /// grantor's, not attached: anti-entropy sends it to a member that lacks it, and its seq
    /// counts as known (a cut may pass it; a vote above it may be weighed). (`recorded`: it
    /// waited as an orphan, and was recorded then.)
    ///
    /// One that breaks the chain rules (a range outside its parent's, a lease given on in
    /// part) is refused as any such grant is. Past `spentRoom`, one is refused unkept (it
    /// comes again by anti-entropy after the next checkpoint).
    mutating func refuseSpent(_ g: Grant, recorded: Bool = false) -> InsertResult {
        if g.kind != .reclaim, let why = chainProblem(g, parent: spent[g.parent]!) { return reject(why, chain: true) }
        guard spentRoom > 0 else { return .rejected("too many spent grants since the checkpoint") }
        counters.spent += 1
        setAside(g)
        freshlySpent.insert(g.ref)
        noteSpent(g, recorded: recorded)
        return .rejected("its parent holds nothing at the checkpoint, nor will it")
    }

    /// `g`, spent outside the base's cut, held as its grantor's.
    mutating func noteSpent(_ g: Grant, recorded: Bool) {
        if !recorded { record(g) }
        byGrantor[g.grantor]!.passed(g.seq)
        retryWaitingReclaims(after: g)
    }

    /// What a view on `cp` sets aside from this one: its grants inside `cp`'s cut that are
    /// none of `cp`'s holdings; those spent here that a merge here names; and those refused
    /// here since this view's base that lie outside `cp`'s cut.
    func spent(at cp: PoolCheckpoint) -> [Bytes32: Grant] {
        let cut = cp.insideSeq
        func inside(_ g: Grant) -> Bool { g.isGenesis || g.seq <= (cut[g.grantor] ?? 0) }
        let held = Set(cp.holdings.map(\.ref))
        var out: [Bytes32: Grant] = [:]
        for (ref, g) in grants where inside(g) && !held.contains(ref) { out[ref] = g }
        // With the spent grants above those kept, up to the first inside the cut: sent with
        // them to a member that lacks them.
        let kept = spent.filter { children[$0.key] != nil || (freshlySpent.contains($0.key) && !inside($0.value)) }.map(\.key)
        addSpent(from: kept, into: &out, excluding: held, inside: inside)
        return out
    }

    /// Adds to `out` the spent grants `refs` names, and the spent grants above each, up to
    /// the first `inside` the cut (known for spent by its seq: nothing above it is needed);
    /// none that `excluding` names.
    func addSpent(from refs: [Bytes32], into out: inout [Bytes32: Grant], excluding: Set<Bytes32> = [],
                  inside: (Grant) -> Bool) {
        var stack = refs
        while let ref = stack.popLast() {
            guard out[ref] == nil, !excluding.contains(ref), let g = spent[ref] else { continue }
            out[ref] = g
            if !inside(g) { stack += g.allParents }
        }
    }

    /// The spent grants a view built from this one's grants (a restart, or one taken on
    /// trust) needs: those that attached merges name, those outside the base's cut (held
    /// as their grantors'), and the spent grants above those.
    var keptSpent: [Grant] {
        var out: [Bytes32: Grant] = [:]
        addSpent(from: spent.filter { ref, g in children[ref] != nil || !insideBase(g) }.map(\.key), into: &out, inside: insideBase)
        return Array(out.values)
    }

    /// `grants` with the spent grants above their merges and their spent grants put first:
    /// what a member that lacks them needs to attach those merges, and to know the others
    /// for spent rather than keep them waiting for a parent.
    public func withSpentParents(_ grants: [Grant]) -> [Grant] {
        guard !spent.isEmpty else { return grants }
        var extra: [Bytes32: Grant] = [:]
        addSpent(from: grants.filter { $0.kind == .merge || spent[$0.ref] != nil }.flatMap(\.allParents), into: &extra, inside: insideBase)
        return extra.values.sorted { ($0.seq, $0.ref) < ($1.seq, $1.ref) } + grants
    }
}
