import MeshCore

/// The fold (docs/pool.md, "The fold: who owns what"): who owns each stretch of the pool,
/// computed from the tree of grants and kept current grant by grant.
extension RingView {
    /// The roots of the tree and their effective ranges: the genesis grant and the whole
    /// pool, or the base's holdings and what each holds.
    var roots: [(Bytes32, RangeSet)] {
        if base != nil { return holdings.values.sorted { $0.ref < $1.ref }.map { ($0.ref, $0.held) } }
        guard let root = genesisRef, let g = grants[root] else { return [] }
        return [(root, RangeSet(g.range))]
    }

    /// Whether a strict ancestor of the attached grant `ref` is in `set`.
    func hasAncestor(_ ref: Bytes32, in set: Set<Bytes32>) -> Bool {
        var r = ref
        while let g = grants[r], !g.isGenesis {
            r = g.parent
            if set.contains(r) { return true }
        }
        return false
    }

    /// A child in its parent's list: what the fold needs of it, without copying the grant.
    struct Child: Sendable {
        var seq: UInt64
        var tie: UInt8
        var ref: Bytes32
        var range: AddressRange

        init(_ g: Grant, ref: Bytes32) {
            (seq, tie) = g.order
            self.ref = ref
            range = g.range
        }

        /// Fold order: (order, ref).
        func precedes(_ o: Child) -> Bool { (seq, tie) != (o.seq, o.tie) ? (seq, tie) < (o.seq, o.tie) : ref < o.ref }
    }

    /// The children of `ref` in fold order, less those `skip` names.
    func sortedChildren(of ref: Bytes32, skipping skip: ((Grant) -> Bool)? = nil) -> [Child] {
        let kids = children[ref] ?? []
        guard let skip else { return kids }
        return kids.filter { !skip(grants[$0.ref]!) }
    }

    /// One stretch of the pool and who holds it.
    public struct Ownership: Hashable, Sendable {
        public var range: AddressRange
        public var owner: NodeID
        /// `.space` or `.lease` (space taken by a reclaim is space).
        public var kind: Grant.Kind
        /// The grant by which `owner` holds it.
        public var grant: Bytes32
    }

    /// Addresses held (space and leases) by each owner in the fold.
    public mutating func heldByOwner() -> [NodeID: UInt64] {
        let own = ownership()
        if let heldCache { return heldCache }
        var by: [NodeID: UInt64] = [:]
        for o in own { by[o.owner, default: 0] += o.range.count }
        heldCache = by
        return by
    }

    /// The pool, cut into stretches by owner, sorted by address. Stretches not yet covered
    /// (no genesis grant known) are absent.
    public mutating func ownership() -> [Ownership] {
        if let cache, dirty.isEmpty { return cache }
        if let old = cache {
            // Fold again only under the parents that gained children since: the topmost
            // ones (their own effective ranges have not changed), whose subtrees' stretches
            // tile those ranges exactly.
            var fresh: [Ownership] = []
            var refolded = RangeSet()
            for p in dirty.sorted() where !hasAncestor(p, in: dirty) {
                guard let eff = effective[p] else { continue }
                var stack = [p]
                while let r = stack.popLast() {
                    for c in children[r] ?? [] where effective.removeValue(forKey: c.ref) != nil { stack.append(c.ref) }
                }
                // The table moves out while it is written: `fold` reads `self`, and a
                // table it shares would be copied whole at every write.
                var effs = effective
                effective = [:]
                fresh += fold(from: p, effective: eff, skipping: nil, recording: &effs, record: true)
                effective = effs
                refolded = refolded.union(eff)
            }
            dirty = []
            fresh += old.filter { !refolded.contains($0.range.first) }
            fresh.sort { $0.range < $1.range }
            cache = fresh
            return fresh
        }
        let tops = roots
        guard !tops.isEmpty else { return [] }
        effective = [:]
        var effs: [Bytes32: RangeSet] = [:]
        var out: [Ownership] = []
        for (root, eff) in tops { out += fold(from: root, effective: eff, skipping: nil, recording: &effs, record: true) }
        effective = effs
        out.sort { $0.range < $1.range }
        cache = out
        return out
    }

    /// Notes that `g` attached, for the cached fold: only the subtree of its parent can
    /// change (nothing, if the parent has no effective range: a grant attached since the
    /// fold has none recorded, and lies under a parent noted already).
    mutating func noteAttached(_ g: Grant) {
        guard cache != nil else { return }
        if g.isGenesis || dirty.count >= 64 {
            cache = nil
            dirty = []
        } else if effective[g.parent] != nil {
            dirty.insert(g.parent)
        }
    }

    /// The fold, leaving out the grants `skip` names (and all that descends from them).
    func fold(skipping skip: ((Grant) -> Bool)?) -> [Ownership] {
        var out: [Ownership] = []
        for (root, eff) in roots { out += fold(from: root, effective: eff, skipping: skip) }
        out.sort { $0.range < $1.range }
        return out
    }

    /// The fold of the subtree under `top`, whose effective range is `effective`.
    func fold(from top: Bytes32, effective: RangeSet, skipping skip: ((Grant) -> Bool)?) -> [Ownership] {
        var unused: [Bytes32: RangeSet] = [:]
        return fold(from: top, effective: effective, skipping: skip, recording: &unused, record: false)
    }

    /// The fold of the subtree under `top`; with `effs`, also each grant's effective range.
    func fold(from top: Bytes32, effective: RangeSet, skipping skip: ((Grant) -> Bool)?,
              recording effs: inout [Bytes32: RangeSet], record: Bool) -> [Ownership] {
        var out: [Ownership] = []
        var stack: [(Bytes32, RangeSet)] = [(top, effective)]
        while let (ref, eff) = stack.popLast() {
            if record { effs[ref] = eff }
            let grant = holder(of: ref)!
            var claimed = RangeSet()
            for kid in sortedChildren(of: ref, skipping: skip) {
                let mine = eff.intersection(kid.range).subtracting(claimed)
                if mine.isEmpty { continue }
                claimed = claimed.union(mine)
                stack.append((kid.ref, mine))
            }
            for r in eff.subtracting(claimed).ranges {
                out.append(Ownership(range: r, owner: grant.grantee, kind: grant.kind == .lease ? .lease : .space, grant: ref))
            }
        }
        out.sort { $0.range < $1.range }
        return out
    }

    /// Who holds `address`, and whether it is a lease.
    public mutating func owner(of address: UInt32) -> Ownership? {
        let o = ownership()
        let lo = o.partitionPoint { $0.range.last < address }
        return lo < o.count && o[lo].range.contains(address) ? o[lo] : nil
    }

    /// Space `node` holds and has not granted onward: what it may offer from.
    public mutating func freeSpace(of node: NodeID) -> [Ownership] {
        ownership().filter { $0.owner == node && $0.kind == .space }
    }

    /// The addresses leased to `node` (normally one).
    public mutating func leases(of node: NodeID) -> [Ownership] {
        ownership().filter { $0.owner == node && $0.kind == .lease }
    }
}
