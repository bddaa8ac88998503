import MeshCore

/// Who owns each address of the pool, as a pure function of the set of grants known.
///
/// Grants form a tree rooted at the genesis grant: each names its parent. Folding the tree
/// gives every grant an *effective* range: the genesis grant's is the whole pool; the
/// children of a grant, taken in (seq, ref) order, each get their own range ∩ their
/// parent's effective range minus what earlier siblings took. So when a grantor hands out
/// the same address twice (a lost disk, or a lie), the lower sequence number wins, and
/// every node folds the same answer. An address belongs to the grantee of the deepest
/// grant whose effective range holds it. A reclaim is a child of the departed node's
/// grant, ordered just after its cutoff: it takes whatever that node had not granted
/// onward by then, and its grants with a higher seq get nothing.
///
/// Because the fold depends only on the set, merging two views is set union: commutative,
/// associative and idempotent (a CRDT), and any order of delivery gives the same view.
public struct RingView: Sendable {
    public let pool: AddressRange
    public let genesis: NodeID
    /// The mesh's admin key (from the token), the only signer of forced reclaims; nil: none.
    public let admin: NodeID?
    let auth: any RecordAuthenticator

    /// Valid grants attached to the tree, by ref.
    public private(set) var grants: [Bytes32: Grant] = [:]
    /// Grants whose parent is not known yet, by parent ref (signature already checked).
    var orphans: [Bytes32: [Grant]] = [:]
    /// Reclaims whose voters' grants up to their votes are not all known yet, by ref.
    var waitingReclaims: [Bytes32: Grant] = [:]
    /// Grants that hold nothing and never will, by ref (`RingView+Spent.swift`): inside the
    /// base's cut but none of its holdings, or under such a grant. Kept aside so that what
    /// comes under them later is known for what it is, not kept waiting for a parent.
    var spent: [Bytes32: Grant] = [:]
    /// How many more may be set aside as they arrive before the next checkpoint.
    var spentRoom = RingView.spentLimit
    /// Those refused since the base was made (their parent spent): a view on the next
    /// checkpoint keeps those outside its cut, and forgets them at the one after.
    var freshlySpent: Set<Bytes32> = []
    /// Each attached grant's children, kept in fold order ((order, ref): `Child`).
    var children: [Bytes32: [Child]] = [:]
    /// Each attached grant's depth: one more than its deepest parent's (a root's is 0).
    /// Every ancestor of a grant lies shallower (`refold` goes shallowest first).
    var depths: [Bytes32: Int] = [:]
    var genesisRef: Bytes32?
    /// The attached reclaims, by ref (what a rewound fold may leave out).
    var reclaimRefs: [Bytes32] = []
    /// Per grantor: its grants held here (attached or waiting), and the count and refs' XOR
    /// of those attached (what digests compare).
    public internal(set) var byGrantor: [NodeID: GrantorStats] = [:]
    public internal(set) var counters = Counters()
    var cache: [Ownership]? { didSet { heldCache = nil } }
    /// Addresses held by each owner in `cache` (kept with it).
    var heldCache: [NodeID: UInt64]?
    /// Each grant's effective range in the cached fold (a grant with none is absent): kept
    /// with `cache`, so that new grants fold again only the subtrees of their parents.
    var effective: [Bytes32: RangeSet] = [:]
    /// Parents that gained children since `cache` was made.
    var dirty: Set<Bytes32> = []
    /// The checkpoint this view is built on (nil: the genesis grant is its root). Its
    /// holdings are then the roots, and `grants` holds only grants made since.
    public private(set) var base: PoolCheckpoint?
    /// The base's holdings by ref.
    var holdings: [Bytes32: PoolCheckpoint.Holding] = [:]
    /// Per grantor, the highest seq inside the base's cut (grants up to it are dropped).
    public private(set) var insideSeq: [NodeID: UInt64] = [:]

    public struct GrantorStats: Sendable, Equatable {
        /// Attached, waiting for a parent, or waiting for its voters' grants.
        public var grants: [Grant] = []
        /// The attached ones: their count and their refs' XOR. An orphan is not counted: its
        /// parent may never come (one inside a checkpoint's cut that held nothing there), and
        /// counted it made a member's digest list what another view on the same checkpoint
        /// refuses or never gets (a leaver then waited out the release wait for it).
        public private(set) var attachedCount: UInt32 = 0
        public private(set) var xor: UInt64 = 0
        public var maxSeq: UInt64 = 0
        /// Seqs of this grantor's attached grants (in the fold), and the highest s such that
        /// seqs 1…s are all attached: what weighing a vote at seq s needs, in O(1).
        var attachedSeqs: Set<UInt64> = []
        public private(set) var contiguousSeq: UInt64 = 0

        mutating func attached(seq: UInt64, ref: Bytes32) {
            attachedCount += 1
            xor ^= ref.w0Value
            passed(seq)
        }

        /// Seq `seq` is known: attached, or spent (holding nothing, it changes no weight).
        mutating func passed(_ seq: UInt64) {
            guard seq > contiguousSeq else { return }
            attachedSeqs.insert(seq)
            while attachedSeqs.contains(contiguousSeq + 1) { attachedSeqs.remove(contiguousSeq + 1); contiguousSeq += 1 }
        }

        /// Seqs 1…`seq` are inside a checkpoint: known, though not held.
        mutating func markInside(upTo seq: UInt64) {
            maxSeq = max(maxSeq, seq)
            if contiguousSeq < seq { contiguousSeq = seq }
            attachedSeqs = attachedSeqs.filter { $0 > seq }
            while attachedSeqs.contains(contiguousSeq + 1) { attachedSeqs.remove(contiguousSeq + 1); contiguousSeq += 1 }
        }
    }

    public struct Counters: Sendable, Equatable, Codable {
        public var badSignatures = 0
        public var badChains = 0
        public var duplicates = 0
        public var orphans = 0
        /// Orphans refused because too many were already waiting (a flood of grants whose
        /// parents never come).
        public var orphansDropped = 0
        /// Reclaims refused: too few votes, bad vote signatures, or a malformed reclaim.
        public var badReclaims = 0
        /// Reclaims made by hand (`--force`, signed by the admin key) that this view accepted.
        public var forcedReclaims = 0
        /// Reclaims refused whose voters held nothing at all in the fold (keys with no space).
        public var weightlessVotes = 0
        /// Grants that arrived after a checkpoint took them in (dropped: the checkpoint
        /// holds what they did).
        public var insideCheckpoint = 0
        /// Grants refused because their parent holds nothing at the base and never will
        /// (a later child of a grant the checkpoint left nothing): they could hold nothing.
        public var spent = 0
    }

    /// At most this many grants wait for a parent; past it, new orphans are refused (they
    /// come again with anti-entropy once their parent is known).
    public static let orphanLimit = 4096

    public enum InsertResult: Equatable, Sendable {
        case added
        case duplicate
        /// Signed correctly, but its parent is not known yet: kept until it arrives.
        case orphan
        case rejected(String)
    }

    /// `pool` is the usable range (the CIDR without its first and last address).
    public init(pool: AddressRange, genesis: NodeID, admin: NodeID? = nil, auth: any RecordAuthenticator) {
        self.pool = pool
        self.genesis = genesis
        self.admin = admin
        self.auth = auth
    }

    /// A view built on `base`: its holdings are the roots, grants inside its cut are
    /// dropped on arrival, and each marked grantor's seqs up to its mark count as known.
    init(pool: AddressRange, genesis: NodeID, admin: NodeID?, auth: any RecordAuthenticator, base: PoolCheckpoint) {
        self.init(pool: pool, genesis: genesis, admin: admin, auth: auth)
        self.base = base
        for h in base.holdings { holdings[h.ref] = h }
        insideSeq = base.insideSeq
        for (grantor, seq) in insideSeq {
            var st = GrantorStats()
            st.markInside(upTo: seq)
            byGrantor[grantor] = st
        }
    }

    public var grantCount: Int { grants.count }
    public var orphanCount: Int { orphanTotal }
    var orphanTotal = 0
    /// Whether a grant to `node` waits for its parent.
    public func hasOrphans(grantedTo node: NodeID) -> Bool {
        orphans.values.contains { $0.contains { $0.grantee == node } }
    }
    /// Whether the view has a root: the genesis grant, or a checkpoint.
    public var hasGenesis: Bool { genesisRef != nil || base != nil }

    /// Every grant this view holds, attached or waiting (for anti-entropy and persistence).
    /// (And the spent grants a view built from these needs: `keptSpent`.)
    public var allGrants: [Grant] { Array(grants.values) + orphans.values.flatMap { $0 } + waitingReclaims.values + keptSpent }

    @discardableResult
    public mutating func insert(_ g: Grant) -> InsertResult {
        let ref = g.ref
        if grants[ref] != nil || isOrphan(g) || waitingReclaims[ref] != nil {
            counters.duplicates += 1
            return .duplicate
        }
        if base != nil, g.isGenesis || (insideSeq[g.grantor].map { g.seq <= $0 } ?? false) {
            counters.insideCheckpoint += 1
            if !g.isGenesis, holdings[ref] == nil, spent[ref] == nil, spentRoom > 0,
               auth.verify(signature: g.signature, message: g.signedBytes, signer: g.grantor) {
                setAside(g)
            }
            return .duplicate
        }
        if spent[ref] != nil {
            counters.duplicates += 1
            return .duplicate
        }
        guard g.range.first <= g.range.last, pool.contains(g.range) else { return reject("range \(g.range) is outside the pool", chain: true) }
        if g.isGenesis {
            guard g.grantor == genesis, g.grantee == genesis, g.range == pool, g.kind == .space else {
                return reject("a genesis grant must give the whole pool from the token's genesis node to itself", chain: true)
            }
        }
        if g.kind == .merge, let why = mergeShapeProblem(g) { return reject(why, chain: true) }
        guard auth.verify(signature: g.signature, message: g.signedBytes, signer: g.grantor) else {
            counters.badSignatures += 1
            return .rejected("bad signature")
        }
        if underSpent(g) { return refuseSpent(g) }
        if g.isGenesis {
            guard genesisRef == nil else { return reject("a second genesis grant", chain: true) }
            attach(g, ref: ref)
            record(g)
            return .added
        }
        // A merge waits for every parent: kept under the first one missing.
        if let missing = firstMissingParent(g) {
            guard orphanCount < Self.orphanLimit else {
                counters.orphansDropped += 1
                return .rejected("too many grants waiting for their parent")
            }
            orphans[missing, default: []].append(g)
            orphanTotal += 1
            counters.orphans += 1
            record(g)
            return .orphan
        }
        if let why = chainProblem(g, parent: parentOrSpent(g.parent)!) {
            // A reclaim whose voters' grants are not all here yet waits for them (anti-
            // entropy sends grants by seq, a voter's later ones often after the reclaim).
            if why.hasPrefix(Self.incompleteVoters), waitingReclaims.count < Self.orphanLimit {
                waitingReclaims[ref] = g
                // Recorded as an orphan is: its seq counts, and anti-entropy passes it on.
                record(g)
                return .orphan
            }
            if g.kind == .reclaim { counters.badReclaims += 1 }
            return reject(why, chain: true)
        }
        attach(g, ref: ref)
        record(g)
        return .added
    }

    static let incompleteVoters = "a voter's grants up to its vote"

    /// A grant by a voter of a waiting reclaim arrived: weigh those reclaims again.
    mutating func retryWaitingReclaims(after g: Grant) {
        guard !waitingReclaims.isEmpty else { return }
        let due = waitingReclaims.filter { $0.value.votes.contains { $0.signer == g.grantor } }
        for (ref, r) in due.sorted(by: { $0.key < $1.key }) {
            // Still short of some voter's grants: wait on, without checking it all again.
            if r.votes.contains(where: { $0.seq > 0 && (byGrantor[$0.signer]?.contiguousSeq ?? 0) < $0.seq }) { continue }
            waitingReclaims[ref] = nil
            guard grants[ref] == nil, let parent = parentGrant(r.parent) else { continue }
            if let why = chainProblem(r, parent: parent) {
                if why.hasPrefix(Self.incompleteVoters) { waitingReclaims[ref] = r } else { counters.badReclaims += 1; counters.badChains += 1 }
                continue
            }
            // Recorded already: when it began to wait (as an orphan first, or for its voters).
            attach(r, ref: ref)
        }
    }

    mutating func record(_ g: Grant) {
        byGrantor[g.grantor, default: GrantorStats()].grants.append(g)
        byGrantor[g.grantor]!.maxSeq = max(byGrantor[g.grantor]!.maxSeq, g.seq)
    }

    /// Adds every grant of `other` (set union).
    public mutating func merge(_ other: RingView) {
        for g in other.allGrants { insert(g) }
    }

    /// The first parent of `g` this view lacks (nil: it has them all).
    func firstMissingParent(_ g: Grant) -> Bytes32? {
        if g.kind != .merge { return parentGrant(g.parent) == nil ? g.parent : nil }
        return g.allParents.first { parentOrSpent($0) == nil }
    }

    /// Whether `g` waits here for a parent.
    func isOrphan(_ g: Grant) -> Bool {
        if g.kind != .merge { return orphans[g.parent]?.contains(g) == true }
        return g.allParents.contains { orphans[$0]?.contains(g) == true }
    }

    /// What a merge must be whatever its parents: to its signer, over the whole pool, with
    /// two to `Grant.mergeLimit` parents in increasing order (so one set of parents has one
    /// encoding).
    func mergeShapeProblem(_ g: Grant) -> String? {
        if g.grantee != g.grantor { return "a merge must go to its signer" }
        if g.range != pool { return "a merge's range must be the whole pool" }
        let ps = g.allParents
        guard ps.count >= 2, ps.count <= Grant.mergeLimit else { return "a merge must have 2 to \(Grant.mergeLimit) parents" }
        for i in 1..<ps.count where !(ps[i - 1] < ps[i]) { return "a merge's parents must be distinct and in increasing order" }
        return nil
    }

    mutating func chainProblem(_ g: Grant, parent: Grant) -> String? {
        if g.kind == .reclaim { return reclaimProblem(g, parent: parent) }
        if g.kind == .merge {
            // What its signer holds by each parent, none of them a lease (a lease is
            // released whole, as space, before it is merged).
            for p in g.allParents {
                guard let pg = parentOrSpent(p) else { return "a parent is missing" }
                if pg.grantee != g.grantor { return "its grantor does not hold every parent" }
                if pg.kind == .lease { return "a lease cannot be merged" }
            }
            return nil
        }
        // A lease is granted onward only whole and as space: that is how its holder releases it.
        if parent.kind == .lease, !(g.kind == .space && g.range == parent.range) {
            return "its parent is a lease, which can only be released whole"
        }
        if parent.grantee != g.grantor { return "its grantor does not hold the parent grant" }
        if !parent.range.contains(g.range) { return "its range \(g.range) is not inside its parent's \(parent.range)" }
        return nil
    }

    /// A reclaim takes a whole grant held by another node, for its own signer, with votes
    /// from members that hold a quorum of the pool (outside the reclaimed range).
    ///
    /// A vote's weight is read from this view, never taken from the vote: what the fold
    /// says its signer holds. So a throwaway key adds nothing, and two nodes holding the
    /// same grants compute the same weight.
    mutating func reclaimProblem(_ g: Grant, parent: Grant) -> String? {
        let target = parent.grantee
        if g.grantee != g.grantor { return "a reclaim must go to its signer" }
        if target == g.grantor { return "a node cannot reclaim its own grant" }
        if g.range != parent.range { return "a reclaim must take its parent's whole range" }
        // Inside a checkpoint the departed node's grants are folded in already: a reclaim
        // may not reorder them, nor weigh a vote by a fold rewound past the cut.
        if let inside = insideSeq[target], g.cutoff < inside { return "its cutoff lies inside the checkpoint the view is built on" }
        if g.forced { return forcedProblem(g) }
        var signers = Set<NodeID>()
        for v in g.votes {
            guard v.signer != target, signers.insert(v.signer).inserted else { return "a vote by the departed node, or two by one signer" }
            let message = ReclaimVote.signedBytes(holding: g.parent, cutoff: g.cutoff, successor: g.grantor, seq: v.seq)
            guard auth.verify(signature: v.signature, message: message, signer: v.signer) else { return "a vote's signature does not verify" }
        }
        let weight: RangeSet
        switch voteWeight(g.votes) {
        case .incomplete(let signer):
            return "\(Self.incompleteVoters) (\(signer.fingerprint)) are not all known yet"
        case .weight(let w): weight = w.subtracting(Self.leftOutOfVotes(parent))
        }
        guard Self.isQuorum(weight, of: pool) else {
            if weight.isEmpty { counters.weightlessVotes += 1 }
            return "its votes' signers hold \(weight.count) of \(pool.count) addresses, not a majority"
        }
        return nil
    }

    /// What the votes for a reclaim of `parent` do not weigh: its range (votes weigh what
    /// their signers hold outside it). A merge's range is the whole pool, and what a merge
    /// itself holds is the departed node's, which does not vote: nothing, for one.
    public static func leftOutOfVotes(_ parent: Grant) -> RangeSet {
        parent.kind == .merge ? RangeSet() : RangeSet(parent.range)
    }

    /// Whether `g` is in this view: attached, waiting for its parent or its voters' grants,
    /// or inside the base's cut.
    public func holds(_ g: Grant) -> Bool {
        let ref = g.ref
        return grants[ref] != nil || waitingReclaims[ref] != nil || isOrphan(g) || spent[ref] != nil || (base?.holdsInside(g) ?? false)
    }

    /// The grant `ref` as a parent: an attached grant, or a holding of the base.
    func parentGrant(_ ref: Bytes32) -> Grant? {
        grants[ref] ?? holdings[ref]?.asParent
    }

    /// The grantee and kind of an attached grant or a base holding.
    func holder(of ref: Bytes32) -> (grantee: NodeID, kind: Grant.Kind)? {
        if let g = grants[ref] { return (g.grantee, g.kind) }
        if let h = holdings[ref] { return (h.grantee, h.kind) }
        return nil
    }

    /// A forced reclaim (`meshwork pool reclaim --force`) stands only with the signature of
    /// the mesh's admin key, named in the token; a mesh without one has no break-glass.
    func forcedProblem(_ g: Grant) -> String? {
        guard let admin else { return "a forced reclaim, and this mesh has no admin key" }
        guard g.votes.count == 1, let v = g.votes.first, v.signer == admin, v.seq == 0 else {
            return "a forced reclaim must carry exactly the admin key's authorisation"
        }
        let message = ReclaimVote.signedBytes(holding: g.parent, cutoff: g.cutoff, successor: g.grantor, seq: v.seq)
        guard auth.verify(signature: v.signature, message: message, signer: admin) else {
            return "a forced reclaim whose admin signature does not verify"
        }
        return nil
    }

    /// Whether `held` is a quorum of `pool`: more than half its addresses, or exactly half
    /// with the pool's first address (the tie-break: that address has one owner, so only
    /// one side of any split can hold it).
    public static func isQuorum(_ held: RangeSet, of pool: AddressRange) -> Bool {
        isQuorum(weight: held.count, holdsAnchor: held.contains(pool.first), of: pool)
    }

    public static func isQuorum(weight: UInt64, holdsAnchor: Bool, of pool: AddressRange) -> Bool {
        weight * 2 > pool.count || (weight * 2 == pool.count && holdsAnchor)
    }

    /// Takes over the counters of the view this one replaces.
    mutating func inherit(_ c: Counters) { counters = c }

    mutating func reject(_ why: String, chain: Bool) -> InsertResult {
        if chain { counters.badChains += 1 }
        return .rejected(why)
    }

    mutating func attach(_ g: Grant, ref: Bytes32) {
        grants[ref] = g
        byGrantor[g.grantor, default: GrantorStats()].attached(seq: g.seq, ref: ref)
        if g.forced { counters.forcedReclaims += 1 }
        if g.isGenesis {
            genesisRef = ref
        } else {
            // Kept sorted: the fold walks children in order (most arrive in order: appended).
            // A merge is a child of each of its parents.
            let c = Child(g, ref: ref)
            let parents = g.allParents
            depths[ref] = 1 + (parents.map { depths[$0] ?? 0 }.max() ?? 0)
            for p in parents {
                var list = children.removeValue(forKey: p) ?? []
                var i = list.count
                while i > 0, c.precedes(list[i - 1]) { i -= 1 }
                list.insert(c, at: i)
                children[p] = list
            }
        }
        if g.kind == .reclaim { reclaimRefs.append(ref) }
        noteAttached(g)
        takeOrphans(waitingFor: ref)
        // Reclaims waiting for this grantor's grants (this one may have come as an orphan).
        retryWaitingReclaims(after: g)
    }

    /// The orphans that were waiting for `ref`, now attached or spent (or refused).
    mutating func takeOrphans(waitingFor ref: Bytes32) {
        guard let waiting = orphans.removeValue(forKey: ref) else { return }
        orphanTotal -= waiting.count
        for o in waiting {
            // A merge may lack another parent still: it waits under that one.
            if o.kind == .merge, let missing = firstMissingParent(o) {
                orphans[missing, default: []].append(o)
                orphanTotal += 1
                continue
            }
            if underSpent(o) {
                // Not kept (no room, or a bad chain): no longer held either.
                _ = refuseSpent(o, recorded: true)
                if spent[o.ref] == nil { byGrantor[o.grantor]?.grants.removeAll { $0.ref == o.ref } }
                continue
            }
            let why = chainProblem(o, parent: parentOrSpent(o.parent)!)
            if why == nil {
                attach(o, ref: o.ref)
            } else if why!.hasPrefix(Self.incompleteVoters), waitingReclaims.count < Self.orphanLimit {
                // A reclaim whose parent came before its voters' grants: it waits for them.
                waitingReclaims[o.ref] = o
            } else {
                counters.badChains += 1
                if o.kind == .reclaim { counters.badReclaims += 1 }
            }
        }
    }

    /// The highest grant sequence number `node` has used, as this view knows it.
    public func highestSeq(of node: NodeID) -> UInt64? {
        byGrantor[node]?.maxSeq
    }
}
