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

    /// The fold again under `parents` (whose effective ranges in `table` are current) and
    /// what it covers. The fold is a function of each address alone (an address goes to the
    /// first child in fold order whose range holds it, and on down), so each parent, the
    /// shallowest first, is folded over its effective range less what shallower ones
    /// covered: every address is folded again from the topmost of those parents on its
    /// path, above which nothing changed. (A merge has several parents: a subtree may lie
    /// partly under one of them and partly elsewhere.) With `record`, the effective ranges
    /// below are rewritten in `table` over what is covered.
    func refold(_ parents: Set<Bytes32>, skipping skip: ((Grant) -> Bool)?, table: inout [Bytes32: RangeSet],
                record: Bool) -> (stretches: [Ownership], covered: RangeSet) {
        let tops = parents.map { ($0, depths[$0] ?? 0) }.sorted { $0.1 != $1.1 ? $0.1 < $1.1 : $0.0 < $1.0 }
        var covered = RangeSet()
        var out: [Ownership] = []
        for (p, _) in tops {
            guard let eff = table[p] else { continue }
            let region = covered.isEmpty ? eff : eff.subtracting(covered)
            if region.isEmpty { continue }
            if record {
                // Out of every effective range below: the fold records it again.
                var stack = [p]
                while let r = stack.popLast() {
                    for c in children[r] ?? [] {
                        guard let e = table[c.ref] else { continue }
                        let rest = e.subtracting(region)
                        if rest.count == e.count { continue }
                        table[c.ref] = rest.isEmpty ? nil : rest
                        stack.append(c.ref)
                    }
                }
            }
            out += fold(from: p, effective: region, skipping: skip, recording: &table, record: record)
            covered = covered.union(region)
        }
        return (out, covered)
    }

    /// `stretches` less what `covered` holds (a stretch may lie partly inside it).
    static func outside(_ stretches: [Ownership], _ covered: RangeSet) -> [Ownership] {
        guard !covered.isEmpty else { return stretches }
        var out: [Ownership] = []
        out.reserveCapacity(stretches.count)
        for o in stretches {
            let inside = covered.intersection(o.range)
            if inside.isEmpty { out.append(o); continue }
            for r in RangeSet(o.range).subtracting(inside).ranges {
                var piece = o
                piece.range = r
                out.append(piece)
            }
        }
        return out
    }

    /// Sorted stretches with touching neighbours of one grant joined: one form for one fold,
    /// however it was reached (a merge's stretches come from each of its parents apart).
    static func coalesced(_ sorted: [Ownership]) -> [Ownership] {
        var out: [Ownership] = []
        out.reserveCapacity(sorted.count)
        for o in sorted {
            if let last = out.last, last.grant == o.grant, UInt64(last.range.last) + 1 == UInt64(o.range.first) {
                out[out.count - 1].range = AddressRange(last.range.first, o.range.last)
            } else {
                out.append(o)
            }
        }
        return out
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
            // Fold again only under the parents that gained children since (`refold`).
            // The table moves out while it is written: `fold` reads `self`, and a table it
            // shares would be copied whole at every write.
            var effs = effective
            effective = [:]
            let (fresh, refolded) = refold(dirty, skipping: nil, table: &effs, record: true)
            effective = effs
            dirty = []
            var all = fresh + Self.outside(old, refolded)
            all.sort { $0.range < $1.range }
            all = Self.coalesced(all)
            cache = all
            return all
        }
        let tops = roots
        guard !tops.isEmpty else { return [] }
        effective = [:]
        var effs: [Bytes32: RangeSet] = [:]
        var out: [Ownership] = []
        for (root, eff) in tops { out += fold(from: root, effective: eff, skipping: nil, recording: &effs, record: true) }
        effective = effs
        out.sort { $0.range < $1.range }
        out = Self.coalesced(out)
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
        } else if g.kind == .merge {
            for p in g.allParents where effective[p] != nil { dirty.insert(p) }
        } else if effective[g.parent] != nil {
            dirty.insert(g.parent)
        }
    }

    /// The fold, leaving out the grants `skip` names (and all that descends from them).
    func fold(skipping skip: ((Grant) -> Bool)?) -> [Ownership] {
        var out: [Ownership] = []
        for (root, eff) in roots { out += fold(from: root, effective: eff, skipping: skip) }
        out.sort { $0.range < $1.range }
        return Self.coalesced(out)
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
            // A merge is reached once from each parent: its effective range is their union.
            if record { effs[ref] = effs[ref].map { $0.union(eff) } ?? eff }
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
